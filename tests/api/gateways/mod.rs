//! The gateway configurations shipped in `config/gateways/`: their shape, and (for
//! nginx and Caddy) their behaviour with the real servers.

mod caddy;
mod envoy;
mod forward;
mod nginx;
