//! `scan --sockets`: one line per socket, like `ss -tanp`, plus owners with
//! fds and comm, namespace and cookie.

use super::netns_label;
use super::style::Style;
use sockleak_model::{Endpoint, Snapshot, TcpState};
use std::collections::HashMap;

/// An endpoint as `ss` prints it: port 0 (a listener's peer, an unbound
/// socket) is `*`, so `0.0.0.0:*` and `[::]:*`.
fn ss_endpoint(ep: Endpoint) -> String {
    if ep.port != 0 {
        return ep.to_string();
    }
    let mut s = ep.to_string();
    s.truncate(s.len().saturating_sub(1)); // the "0" of ":0"
    s.push('*');
    s
}

/// Renders every socket of the snapshot.
pub fn render(snap: &Snapshot, st: Style) -> String {
    let comm: HashMap<u32, &str> = snap
        .processes
        .iter()
        .map(|p| (p.pid, p.comm.as_str()))
        .collect();
    let rows: Vec<[String; 7]> = snap
        .sockets
        .iter()
        .map(|s| {
            let users = if s.owners.is_empty() {
                if s.inode == 0 {
                    String::new()
                } else {
                    "owner-unknown".to_string()
                }
            } else {
                let parts: Vec<String> = s
                    .owners
                    .iter()
                    .map(|o| {
                        format!(
                            "(\"{}\",pid={},fd={}{})",
                            comm.get(&o.pid).copied().unwrap_or("?"),
                            o.pid,
                            o.fd,
                            if o.inherited { ",inherited" } else { "" }
                        )
                    })
                    .collect();
                format!("users:({})", parts.join(","))
            };
            [
                s.state.ss_name().to_string(),
                s.recv_q.to_string(),
                s.send_q.to_string(),
                ss_endpoint(s.local),
                ss_endpoint(s.remote),
                format!("{}/{}", netns_label(snap, s.netns), s.cookie.0),
                users,
            ]
        })
        .collect();
    let header = [
        "State",
        "Recv-Q",
        "Send-Q",
        "Local Address:Port",
        "Peer Address:Port",
        "Netns/Cookie",
        "Process",
    ];
    let mut w = [0usize; 6];
    for (i, h) in header.iter().take(6).enumerate() {
        w[i] = h.len();
    }
    for r in &rows {
        for i in 0..6 {
            w[i] = w[i].max(r[i].chars().count());
        }
    }
    let mut out = String::new();
    let header: [String; 7] = header.map(str::to_string);
    out.push_str(&st.bold(&format_row(&header, &w)));
    out.push('\n');
    for (r, s) in rows.iter().zip(&snap.sockets) {
        let line = format_row(r, &w);
        // Colour after padding, so escape codes do not upset the widths.
        if s.state == TcpState::CloseWait {
            let (state, rest) = line.split_at(w[0]);
            out.push_str(&st.red(state));
            out.push_str(rest);
        } else {
            out.push_str(&line);
        }
        out.push('\n');
    }
    out
}

/// One line: state, queues (right-aligned, as ss), addresses, namespace and
/// cookie padded to `w`, then the owners unpadded.
fn format_row(r: &[String; 7], w: &[usize; 6]) -> String {
    format!(
        "{:<w0$} {:>w1$} {:>w2$} {:<w3$} {:<w4$} {:<w5$} {}",
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        r[6],
        w0 = w[0],
        w1 = w[1],
        w2 = w[2],
        w3 = w[3],
        w4 = w[4],
        w5 = w[5]
    )
    .trim_end()
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    #[test]
    fn port_zero_prints_as_a_star_like_ss() {
        let v4 = |p| Endpoint::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), p);
        let v6 = |p| Endpoint::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), p);
        assert_eq!(ss_endpoint(v4(0)), "0.0.0.0:*");
        assert_eq!(ss_endpoint(v6(0)), "[::]:*");
        assert_eq!(ss_endpoint(v4(10)), "0.0.0.0:10");
        assert_eq!(ss_endpoint(v6(80)), "[::]:80");
    }
}
