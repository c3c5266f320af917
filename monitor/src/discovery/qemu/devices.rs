//! `-device`, `-netdev` and the `-object`s the model keeps (memory backends, iothreads).

use serde::Serialize;

use super::QemuCommandLine;
use super::opts::{Props, parse_bool, parse_ranges, parse_size};

/// One `-device`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Device {
    pub driver: String,
    pub id: Option<String>,
    pub bus: Option<String>,
    /// The `-drive` id or `-blockdev` node name of a block frontend.
    pub drive: Option<String>,
    /// The `-netdev` id of a NIC.
    pub netdev: Option<String>,
    pub iothread: Option<String>,
    /// Everything else, in command-line order.
    pub props: Props,
}

impl Device {
    pub(crate) fn from_props(mut props: Props) -> Self {
        Self {
            driver: props.take("driver").unwrap_or_default(),
            id: props.take("id"),
            bus: props.take("bus"),
            drive: props.take("drive"),
            netdev: props.take("netdev"),
            iothread: props.take("iothread"),
            props,
        }
    }
}

/// One `-netdev` host backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NetDev {
    /// `tap`, `user`, `bridge`, `vhost-user`, …
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Option<String>,
    /// In-kernel virtio-net datapath (`vhost=on`).
    pub vhost: Option<bool>,
    pub ifname: Option<String>,
    pub props: Props,
}

impl NetDev {
    pub(crate) fn from_props(mut props: Props) -> Self {
        Self {
            kind: props.take("type").unwrap_or_default(),
            id: props.take("id"),
            vhost: props.take("vhost").and_then(|v| parse_bool(&v)),
            ifname: props.take("ifname"),
            props,
        }
    }
}

/// A guest NIC resolved to its host backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nic {
    pub id: Option<String>,
    /// The device driver, e.g. `virtio-net-pci`.
    pub model: String,
    pub mac: Option<String>,
    pub netdev: Option<String>,
    /// The backend's type (`tap`, `user`, …); `None` when the netdev is not on the command line.
    pub backend: Option<String>,
    pub vhost: Option<bool>,
    pub ifname: Option<String>,
}

/// `-object memory-backend-{ram,file,memfd}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryBackend {
    /// `memory-backend-ram`, `memory-backend-file` or `memory-backend-memfd`.
    pub qom_type: String,
    pub id: Option<String>,
    pub size_bytes: Option<u64>,
    pub mem_path: Option<String>,
    pub share: Option<bool>,
    pub prealloc: Option<bool>,
    /// memfd's `hugetlb=on`.
    pub hugetlb: Option<bool>,
    pub host_nodes: Vec<u32>,
    /// NUMA policy for `host_nodes`: `default`, `preferred`, `bind`, `interleave`.
    pub policy: Option<String>,
    pub props: Props,
}

impl MemoryBackend {
    pub(crate) fn from_props(
        qom_type: String,
        mut props: Props,
        warnings: &mut Vec<String>,
    ) -> Self {
        let id = props.take("id");
        let label = id.as_deref().unwrap_or(&qom_type).to_owned();
        let size_bytes = props.take("size").and_then(|v| {
            let size = parse_size(&v, 1);
            if size.is_none() {
                warnings.push(format!("-object {label}: size \"{v}\" is not a size"));
            }
            size
        });
        let flag = |props: &mut Props, key: &str| props.take(key).and_then(|v| parse_bool(&v));
        // Key=value syntax repeats `host-nodes=`; JSON gives a list flattened to `host-nodes.N`.
        let mut node_values = props.take_all("host-nodes");
        node_values.extend(
            props
                .take_prefixed("host-nodes")
                .iter()
                .map(|(_, v)| v.to_owned()),
        );
        let mut host_nodes = Vec::new();
        if let Err(bad) = parse_ranges(&node_values, &mut host_nodes) {
            warnings.push(format!(
                "-object {label}: host-nodes {bad} is not a node list"
            ));
            host_nodes.clear();
        }
        Self {
            qom_type,
            id,
            size_bytes,
            mem_path: props.take("mem-path"),
            share: flag(&mut props, "share"),
            prealloc: flag(&mut props, "prealloc"),
            hugetlb: flag(&mut props, "hugetlb"),
            host_nodes,
            policy: props.take("policy"),
            props,
        }
    }

    /// Whether guest memory comes from huge pages. For `memory-backend-file` this is a guess
    /// from the path (hugetlbfs is conventionally mounted at `/dev/hugepages*`): the mount
    /// itself is not inspected.
    #[must_use]
    pub fn uses_hugepages(&self) -> bool {
        self.hugetlb == Some(true)
            || self
                .mem_path
                .as_deref()
                .is_some_and(|p| p.contains("hugepages"))
    }
}

/// `-object iothread`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IoThread {
    pub id: Option<String>,
    /// `poll-max-ns`, `thread-pool-max`, …
    pub props: Props,
}

impl QemuCommandLine {
    /// Every `-device` with a `netdev`, joined to its backend.
    #[must_use]
    pub fn nics(&self) -> Vec<Nic> {
        self.devices
            .iter()
            .filter(|d| d.netdev.is_some())
            .map(|dev| {
                let backend = self
                    .netdevs
                    .iter()
                    .rev()
                    .find(|n| n.id.is_some() && n.id == dev.netdev);
                Nic {
                    id: dev.id.clone(),
                    model: dev.driver.clone(),
                    mac: dev.props.get("mac").map(str::to_owned),
                    netdev: dev.netdev.clone(),
                    backend: backend.map(|n| n.kind.clone()),
                    vhost: backend.and_then(|n| n.vhost),
                    ifname: backend.and_then(|n| n.ifname.clone()),
                }
            })
            .collect()
    }
}
