//! The `/etc/hosts` and `resolv.conf` text formats.
//!
//! Owns only parsing: the caller reads the (small) files. Unknown lines are ignored, never an
//! error, the way libc treats them; it never resolves anything itself.

use std::net::{IpAddr, SocketAddr};

/// The addresses `/etc/hosts` gives for `name` (case-insensitive), in file order.
pub fn lookup_hosts(text: &str, name: &str) -> Vec<IpAddr> {
    let name = name.trim_end_matches('.');
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let Some(ip) = words.next().and_then(parse_ip) else {
            continue;
        };
        if words.any(|w| w.trim_end_matches('.').eq_ignore_ascii_case(name)) && !found.contains(&ip)
        {
            found.push(ip);
        }
    }
    found
}

/// The `nameserver` addresses of a `resolv.conf`, in order (IPv4 and IPv6), on port 53.
/// As an extension (for test set-ups) a socket address with a port, `127.0.0.1:5353` or
/// `[::1]:5353`, is accepted too.
pub fn nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => words.next().and_then(|w| {
                    w.parse::<SocketAddr>()
                        .ok()
                        .or_else(|| parse_ip(w).map(|ip| SocketAddr::new(ip, 53)))
                }),
                _ => None,
            }
        })
        .collect()
}

/// An address, tolerating an IPv6 zone suffix (`fe80::1%eth0`), which is dropped.
fn parse_ip(word: &str) -> Option<IpAddr> {
    let word = word.split('%').next().unwrap_or_default();
    word.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &str = "# comment\n127.0.0.1\tlocalhost localhost.localdomain\n::1 localhost ip6-localhost\n\n10.0.0.5  hub.example  hub # the hub\nbogus line here\n10.0.0.6 HUB.example.\n";

    #[test]
    fn hosts_lookup_finds_every_address() {
        let ips: Vec<String> = lookup_hosts(HOSTS, "localhost")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ips, ["127.0.0.1", "::1"]);
        let ips: Vec<String> = lookup_hosts(HOSTS, "hub.example")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ips, ["10.0.0.5", "10.0.0.6"]);
        assert!(lookup_hosts(HOSTS, "the").is_empty());
        assert!(lookup_hosts(HOSTS, "nowhere").is_empty());
    }

    #[test]
    fn resolv_conf_nameservers() {
        let conf = "search lan\nnameserver 192.168.1.1\n# nameserver 9.9.9.9\nnameserver   2001:db8::53\nnameserver fe80::1%eth0\nnameserver not-an-ip\nnameserver 127.0.0.1:5353\noptions ndots:1\n";
        let ns: Vec<String> = nameservers(conf).iter().map(ToString::to_string).collect();
        assert_eq!(
            ns,
            [
                "192.168.1.1:53",
                "[2001:db8::53]:53",
                "[fe80::1]:53",
                "127.0.0.1:5353"
            ]
        );
        assert!(nameservers("").is_empty());
    }
}
