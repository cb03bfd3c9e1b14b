//! Hardening: a quota no tenant can escape, hostile input that changes nothing, bounded
//! resources, durability that holds when the disk fails, and series that exist from the
//! start.

mod durability;
mod fuzz;
mod hostile;
mod integrity;
mod keys;
mod negative_cache;
mod series;
mod sweep;
