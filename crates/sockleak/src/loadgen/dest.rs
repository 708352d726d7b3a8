//! Where the load may go: loopback and this host's own addresses only, unless
//! `--allow-remote`. A load generator pointed at someone else's server by a
//! typo is a denial-of-service tool; refusing by default costs one flag.

use anyhow::{bail, Context, Result};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// Resolves `host:port` to the addresses a connection would use.
pub fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>> {
    // Bracketed IPv6 literals come from URLs ("[::1]").
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .with_context(|| format!("resolve {host}:{port}"))?
        .collect();
    if addrs.is_empty() {
        bail!("resolve {host}:{port}: no address");
    }
    Ok(addrs)
}

/// Refuses any address that is neither loopback nor assigned to an
/// interface of this network namespace, unless `allow_remote`.
pub fn check(what: &str, addrs: &[SocketAddr], allow_remote: bool) -> Result<()> {
    if allow_remote {
        return Ok(());
    }
    let local = local_addresses();
    for a in addrs {
        if !is_local(a.ip(), &local) {
            bail!(
                "{what}: {} is not a loopback address nor one of this host's own addresses; \
                 sockleak sends load only to this host unless you pass --allow-remote",
                a.ip()
            );
        }
    }
    Ok(())
}

/// Loopback (127.0.0.0/8, ::1, and their IPv4-mapped forms) or one of `own`.
pub fn is_local(ip: IpAddr, own: &[IpAddr]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    ip.is_loopback() || own.contains(&ip)
}

/// Addresses of this namespace's interfaces (getifaddrs(3)); empty when the
/// call fails, which leaves loopback as the only allowed destination.
pub fn local_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head into `head`; it is freed below
    // with freeifaddrs and not used after.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, alive
        // until freeifaddrs.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family says which
            // struct it is; we read only the matching struct.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: family AF_INET means a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(IpAddr::from(
                    u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                ));
            } else if family == libc::AF_INET6 {
                // SAFETY: family AF_INET6 means a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_own_addresses_only() {
        let own: Vec<IpAddr> = vec!["10.1.2.3".parse().expect("literal")];
        for ok in [
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "::ffff:127.0.0.1",
            "10.1.2.3",
        ] {
            assert!(is_local(ok.parse().expect("literal"), &own), "{ok}");
        }
        for no in [
            "10.1.2.4",
            "8.8.8.8",
            "::ffff:8.8.8.8",
            "2001:db8::1",
            "0.0.0.0",
        ] {
            assert!(!is_local(no.parse().expect("literal"), &own), "{no}");
        }
    }

    #[test]
    fn refusal_names_the_flag() {
        let remote: Vec<SocketAddr> = vec!["192.0.2.1:80".parse().expect("literal")];
        let err = check("--http http://192.0.2.1/", &remote, false).expect_err("refused");
        assert!(err.to_string().contains("--allow-remote"), "{err}");
        assert!(check("--http", &remote, true).is_ok());
        let lo: Vec<SocketAddr> = vec!["127.0.0.1:80".parse().expect("literal")];
        assert!(check("--http", &lo, false).is_ok());
    }
}
