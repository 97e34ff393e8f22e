//! Nodes in network namespaces of their own, so that a test can cut one off for real: each node
//! gets a namespace with one end of a veth pair whose other end is a port of a bridge in the
//! test's namespace (which also has an address on the bridge, so the test's clients reach every
//! node). Cutting a node takes its bridge port down: its connections stall, nothing is refused,
//! as when a cable is pulled. Needs root (CAP_NET_ADMIN) and `ip` (iproute2); [`Net::create`]
//! says why not where either is missing, and the test skips.

use std::process::Command;
use std::time::Duration;

pub struct Net {
    tag: String,
    subnet: String,
    nodes: usize,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Net {
    /// A bridge and `nodes` namespaces on it, or why they cannot be made here.
    pub fn create(nodes: usize) -> Result<Net, String> {
        let pid = std::process::id();
        let net = Net {
            tag: format!("sl{}", pid % 100_000),
            subnet: format!("10.213.{}", pid % 250),
            nodes,
        };
        // Leftovers of a run with the same pid that was killed before it cleaned up.
        net.remove();
        let bridge = net.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}.254/24", net.subnet),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 1..=nodes {
            let (ns, outer, inner) = (net.namespace(i), net.outer(i), net.inner(i));
            ip(&["netns", "add", &ns])?;
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            ip(&["link", "set", &outer, "master", &bridge, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", net.ip(i)),
                "dev",
                &inner,
            ])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        // A firewall that drops bridged traffic (br_netfilter with a DROP policy) would leave the
        // nodes apart: each must reach the next, refused at once on a port nobody listens on.
        for i in 1..=nodes {
            let to = net.ip(i % nodes + 1);
            let probe = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &net.namespace(i),
                    "timeout",
                    "3",
                    "bash",
                    "-c",
                ])
                .arg(format!("echo > /dev/tcp/{to}/9"))
                .output()
                .map_err(|e| format!("cannot probe the namespaces: {e}"))?;
            let said = String::from_utf8_lossy(&probe.stderr);
            if !said.contains("refused") {
                return Err(format!(
                    "node {i} cannot reach {to} over the bridge: {said}"
                ));
            }
        }
        Ok(net)
    }

    /// Node `i`'s address (1..=N).
    pub fn ip(&self, i: usize) -> String {
        format!("{}.{i}", self.subnet)
    }

    /// The command prefix that runs a program in node `i`'s namespace (same pid).
    pub fn wrapper(&self, i: usize) -> Vec<String> {
        ["ip", "netns", "exec"]
            .iter()
            .map(|s| s.to_string())
            .chain([self.namespace(i)])
            .collect()
    }

    /// Cuts node `i` off from everyone.
    pub fn cut(&self, i: usize) {
        ip(&["link", "set", &self.outer(i), "down"]).expect("cut");
    }

    /// Connects node `i` again.
    pub fn heal(&self, i: usize) {
        ip(&["link", "set", &self.outer(i), "up"]).expect("heal");
        std::thread::sleep(Duration::from_millis(50));
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    fn namespace(&self, i: usize) -> String {
        format!("{}n{i}", self.tag)
    }

    fn outer(&self, i: usize) -> String {
        format!("{}v{i}", self.tag)
    }

    fn inner(&self, i: usize) -> String {
        format!("{}p{i}", self.tag)
    }

    fn remove(&self) {
        for i in 1..=self.nodes {
            let _ = ip(&["netns", "del", &self.namespace(i)]);
            let _ = ip(&["link", "del", &self.outer(i)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.remove();
    }
}
