//! `config/gateways/envoy.yaml` points Envoy's rate limit filter at edgequota's
//! defaults: the gRPC port of `grpc.bind`, the domain of `grpc.domain`, the org taken
//! from a header as the `grpc.org_key` entry, and the token in `initial_metadata`.

use edgequota::config::Settings;
use serde_yaml_ng::Value;

fn shipped() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/gateways/envoy.yaml");
    let text = std::fs::read_to_string(path).expect("envoy.yaml is shipped");
    serde_yaml_ng::from_str(&text).expect("envoy.yaml is YAML")
}

fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, key| match key.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[*key],
    })
}

#[test]
fn the_envoy_configuration_matches_the_services_defaults() {
    let defaults = Settings::load_with_env(None, Vec::<(String, String)>::new()).unwrap();
    let yaml = shipped();
    let hcm = at(
        &yaml,
        &[
            "static_resources",
            "listeners",
            "0",
            "filter_chains",
            "0",
            "filters",
            "0",
            "typed_config",
        ],
    );
    let filter = at(hcm, &["http_filters", "0"]);
    assert_eq!(
        filter["name"].as_str(),
        Some("envoy.filters.http.ratelimit")
    );
    let rl = &filter["typed_config"];
    assert_eq!(rl["domain"].as_str(), Some(defaults.grpc.domain.as_str()));
    assert_eq!(rl["failure_mode_deny"].as_bool(), Some(true));
    assert_eq!(rl["enable_x_ratelimit_headers"].as_str(), Some("OFF"));
    let grpc = at(rl, &["rate_limit_service", "grpc_service"]);
    let cluster_name = at(grpc, &["envoy_grpc", "cluster_name"]).as_str().unwrap();
    let metadata = at(grpc, &["initial_metadata", "0"]);
    assert_eq!(metadata["key"].as_str(), Some("authorization"));
    assert!(metadata["value"].as_str().unwrap().starts_with("Bearer "));
    // The descriptor: the org from a request header, under grpc.org_key.
    let action = at(
        hcm,
        &[
            "route_config",
            "virtual_hosts",
            "0",
            "routes",
            "0",
            "route",
            "rate_limits",
            "0",
            "actions",
            "0",
            "request_headers",
        ],
    );
    assert_eq!(
        action["descriptor_key"].as_str(),
        Some(defaults.grpc.org_key.as_str())
    );
    // The cluster speaks HTTP/2 to grpc.bind's default port.
    let clusters = at(&yaml, &["static_resources", "clusters"])
        .as_sequence()
        .unwrap();
    let cluster = clusters
        .iter()
        .find(|c| c["name"].as_str() == Some(cluster_name))
        .expect("the rate limit cluster exists");
    let options = at(
        cluster,
        &[
            "typed_extension_protocol_options",
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config",
        ],
    );
    assert!(
        options.get("http2_protocol_options").is_some(),
        "gRPC needs HTTP/2"
    );
    let socket = at(
        cluster,
        &[
            "load_assignment",
            "endpoints",
            "0",
            "lb_endpoints",
            "0",
            "endpoint",
            "address",
            "socket_address",
        ],
    );
    let port = defaults
        .grpc
        .bind
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert_eq!(socket["port_value"].as_u64(), Some(port));
    assert_eq!(socket["address"].as_str(), Some("127.0.0.1"));
}
