//! NUMA topology and binding, for `--cpu-devices numa` (one CPU device per
//! node) and `--cpu-devices N` (the allowed CPUs split in `N`).
//!
//! - [`nodes`]: the nodes with CPUs this process may use, each with its CPUs
//!   and memory, from `/sys/devices/system/node`; one node 0 with every
//!   allowed CPU where that is missing (not Linux, a container without
//!   `/sys`).
//! - [`allowed_cpus`], [`parse_cpulist`], [`split_cpus`]: CPU sets.
//! - [`bind_memory`]: asks the kernel to keep a range's pages on a node
//!   (`mbind`). Only a preference: the kernel may refuse (Err, with its
//!   reason) or, for pages of a shared file mapping, accept and not apply it.
//!   Pages are placed when first touched, so memory that a node's threads
//!   fill first lands there anyway.
//!
//! Threads are pinned by `tessera_quant::pool` ([`ThreadPool::pinned`],
//! [`pin_current_thread`]), re-exported here.
//!
//! [`ThreadPool::pinned`]: tessera_quant::pool::ThreadPool::pinned

pub use tessera_quant::pool::{pin_current_thread, thread_affinity};

/// Where the kernel describes the nodes.
const NODE_DIR: &str = "/sys/devices/system/node";

/// Largest CPU number [`parse_cpulist`] accepts (Linux's `NR_CPUS` is at most
/// 8192), so that a garbage range cannot allocate without bound.
const MAX_CPU: usize = 1 << 16;

/// A NUMA node as this process sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumaNode {
    /// The kernel's node number (`nodeN`).
    pub id: usize,
    /// Its CPUs that this process may run on, sorted, never empty.
    pub cpus: Vec<usize>,
    /// Bytes of memory on the node.
    pub total_memory: u64,
    /// Bytes free or reclaimable on the node (see [`node_memory`]).
    pub free_memory: u64,
}

/// The NUMA nodes that have CPUs usable by this process (each node's
/// `cpulist` intersected with [`allowed_cpus`]), sorted by id, from
/// `/sys/devices/system/node/node*/{cpulist,meminfo}`. Entries that do not
/// parse are skipped. Where no node is found that way: one node 0 with every
/// allowed CPU and `/proc/meminfo`'s `MemTotal` and `MemAvailable`.
pub fn nodes() -> Vec<NumaNode> {
    let allowed = allowed_cpus();
    let mut nodes = sys_nodes(NODE_DIR, &allowed);
    if nodes.is_empty() {
        nodes.push(NumaNode {
            id: 0,
            cpus: allowed,
            total_memory: proc_meminfo("MemTotal"),
            free_memory: proc_meminfo("MemAvailable"),
        });
    }
    nodes
}

/// The nodes under `dir` (a copy of `/sys/devices/system/node`) with CPUs in
/// `allowed`.
fn sys_nodes(dir: &str, allowed: &[usize]) -> Vec<NumaNode> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut nodes: Vec<NumaNode> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let id: usize = e.file_name().to_str()?.strip_prefix("node")?.parse().ok()?;
            let list = std::fs::read_to_string(e.path().join("cpulist")).ok()?;
            let cpus: Vec<usize> = parse_cpulist(&list)
                .ok()?
                .into_iter()
                .filter(|c| allowed.binary_search(c).is_ok())
                .collect();
            if cpus.is_empty() {
                return None; // memory-only node, or none of its CPUs allowed
            }
            let (total_memory, free_memory) = node_memory_in(dir, id).unwrap_or((0, 0));
            Some(NumaNode {
                id,
                cpus,
                total_memory,
                free_memory,
            })
        })
        .collect();
    nodes.sort_by_key(|n| n.id);
    nodes
}

/// Node `id`'s memory in bytes, `(total, free)`, from its `meminfo`; `None`
/// where the kernel does not describe it. Free counts what the kernel could
/// hand out without swapping, as `MemAvailable` does for the machine:
/// `MemFree` plus file pages and reclaimable slab, at most the total.
pub fn node_memory(id: usize) -> Option<(u64, u64)> {
    node_memory_in(NODE_DIR, id)
}

fn node_memory_in(dir: &str, id: usize) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("{dir}/node{id}/meminfo")).ok()?;
    // Lines look like "Node 0 MemTotal:       12543776 kB".
    let field = |key: &str| -> Option<u64> {
        text.lines().find_map(|l| {
            let mut w = l.split_whitespace();
            let (_node, _id, k, v) = (w.next()?, w.next()?, w.next()?, w.next()?);
            if k.strip_suffix(':') != Some(key) {
                return None;
            }
            let kb: u64 = v.parse().ok()?;
            Some(kb.saturating_mul(1024))
        })
    };
    let total = field("MemTotal")?;
    let free = ["MemFree", "Active(file)", "Inactive(file)", "SReclaimable"]
        .iter()
        .map(|k| field(k).unwrap_or(0))
        .fold(0u64, u64::saturating_add)
        .min(total);
    Some((total, free))
}

/// A `/proc/meminfo` field in bytes; 0 where there is no such file or field.
pub fn proc_meminfo(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let line = s
                .lines()
                .find(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb.saturating_mul(1024))
        })
        .unwrap_or(0)
}

/// Parses a Linux cpulist: `"0-3,8-11,15"` → `[0, 1, 2, 3, 8, 9, 10, 11, 15]`,
/// sorted and without repeats; surrounding whitespace is ignored and an empty
/// list (a node without CPUs) is `[]`. Errors name the bad item.
pub fn parse_cpulist(s: &str) -> Result<Vec<usize>, String> {
    let s = s.trim();
    let mut cpus = Vec::new();
    if s.is_empty() {
        return Ok(cpus);
    }
    let num = |t: &str| -> Result<usize, String> {
        let t = t.trim();
        let n: usize = t
            .parse()
            .map_err(|_| format!("cpulist {s:?}: {t:?} is not a CPU number"))?;
        if n >= MAX_CPU {
            return Err(format!("cpulist {s:?}: cpu {n} out of range"));
        }
        Ok(n)
    };
    for item in s.split(',') {
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("cpulist {s:?}: range {item:?} runs backwards"));
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(num(item)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// The CPUs this process may run on (`sched_getaffinity` of its main
/// thread, which `taskset` and cgroup cpusets restrict), sorted. Where the
/// OS cannot say: `0..available_parallelism`.
pub fn allowed_cpus() -> Vec<usize> {
    match thread_affinity(std::process::id() as i32) {
        Ok(cpus) if !cpus.is_empty() => cpus,
        _ => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

/// `cpus` split, in order, into `n` disjoint contiguous sets whose sizes
/// differ by at most one (the first ones take the remainder), for
/// `--cpu-devices N`. Err when `n` is 0 or more than there are CPUs.
pub fn split_cpus(cpus: &[usize], n: usize) -> Result<Vec<Vec<usize>>, String> {
    if n == 0 || n > cpus.len() {
        return Err(format!(
            "cannot split {} CPU(s) into {n} device(s): each needs at least one",
            cpus.len()
        ));
    }
    let (base, extra) = (cpus.len() / n, cpus.len() % n);
    let mut rest = cpus;
    Ok((0..n)
        .map(|i| {
            let (set, tail) = rest.split_at(base + usize::from(i < extra));
            rest = tail;
            set.to_vec()
        })
        .collect())
}

/// Asks the kernel to place the pages of `[ptr, ptr + len)` on `node`
/// (`mbind` with `MPOL_PREFERRED`, moving pages already placed elsewhere
/// with `MPOL_MF_MOVE` where the kernel allows, else setting the policy for
/// pages yet to be touched). The range is widened to whole pages (the policy
/// applies to neighbours sharing them). The pages' contents and addresses do
/// not change. Err with the OS's reason when it refuses (EPERM in a
/// sandbox, ENOSYS without NUMA support, EFAULT/ENOMEM for an unmapped
/// range, EINVAL for a node that does not exist), or on another OS. A zero
/// length is Ok.
pub fn bind_memory(ptr: *const u8, len: usize, node: usize) -> Result<(), String> {
    if len == 0 {
        return Ok(());
    }
    sys::mbind_preferred(ptr as usize, len, node)
}

#[cfg(target_os = "linux")]
mod sys {
    /// `<linux/mempolicy.h>`, which `libc` does not carry.
    const MPOL_PREFERRED: libc::c_long = 1;
    const MPOL_MF_MOVE: libc::c_ulong = 1 << 1;
    /// Largest node number the kernel could have (`MAX_NUMNODES` is at most
    /// 1024); beyond it `mbind` would read a mask larger than we mean.
    const MAX_NODE: usize = 1 << 10;

    pub fn mbind_preferred(addr: usize, len: usize, node: usize) -> Result<(), String> {
        if node >= MAX_NODE {
            return Err(format!("node {node} out of range"));
        }
        // SAFETY: sysconf has no preconditions.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            p if p > 0 => p as usize,
            _ => 4096,
        };
        let start = addr & !(page - 1);
        let end = addr
            .checked_add(len)
            .and_then(|e| e.checked_add(page - 1))
            .ok_or("range wraps around the address space")?
            & !(page - 1);
        const WORD: usize = 8 * std::mem::size_of::<libc::c_ulong>();
        let mut mask = vec![0 as libc::c_ulong; node / WORD + 1];
        mask[node / WORD] |= 1 << (node % WORD);
        // The kernel reads `maxnode - 1` bits (libnuma passes bits + 1).
        let maxnode = (mask.len() * WORD + 1) as libc::c_ulong;
        let mbind = |flags: libc::c_ulong| -> Result<(), std::io::Error> {
            // SAFETY: mbind only reads `mask` (`maxnode - 1` bits, which it
            // holds) and changes the placement policy of the range's pages,
            // never their contents or addresses; an unmapped range is an
            // error return, not a fault.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_mbind,
                    start as libc::c_ulong,
                    (end - start) as libc::c_ulong,
                    MPOL_PREFERRED,
                    mask.as_ptr(),
                    maxnode,
                    flags,
                )
            };
            if r == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        match mbind(MPOL_MF_MOVE) {
            Ok(()) => Ok(()),
            // Moving may be what it refuses: the policy alone still helps.
            Err(moving) => mbind(0).map_err(|e| {
                if e.raw_os_error() == moving.raw_os_error() {
                    format!("mbind to node {node}: {e}")
                } else {
                    format!("mbind to node {node}: {e} (with MPOL_MF_MOVE: {moving})")
                }
            }),
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    pub fn mbind_preferred(_addr: usize, _len: usize, _node: usize) -> Result<(), String> {
        Err("binding memory to a NUMA node is not supported on this OS".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpulists_parse() {
        let ok = |s: &str| parse_cpulist(s).unwrap();
        assert_eq!(ok("0-3,8-11,15"), [0, 1, 2, 3, 8, 9, 10, 11, 15]);
        assert_eq!(ok("0\n"), [0]);
        assert_eq!(ok(" 5 , 2-3 "), [2, 3, 5]);
        assert_eq!(ok("4-4,1,1"), [1, 4]);
        assert_eq!(ok("\n"), Vec::<usize>::new());
        assert_eq!(ok("").len(), 0);
        for bad in [
            "a",
            "1-",
            "-1",
            "3-1",
            "1,,2",
            "1-2-3",
            "0-99999999",
            "1;2",
            "0x3",
            "-",
            ",",
            "1 2",
        ] {
            assert!(parse_cpulist(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn splits_are_disjoint_contiguous_and_near_equal() {
        let cpus: Vec<usize> = (0..10).collect();
        assert_eq!(
            split_cpus(&cpus, 3).unwrap(),
            [vec![0, 1, 2, 3], vec![4, 5, 6], vec![7, 8, 9]]
        );
        assert_eq!(split_cpus(&cpus, 1).unwrap(), [&cpus[..]]);
        let ones = split_cpus(&cpus, 10).unwrap();
        assert!(ones.iter().enumerate().all(|(i, s)| s == &[i]));
        assert_eq!(split_cpus(&[8, 9, 2], 2).unwrap(), [vec![8, 9], vec![2]]);
        for n in 1..=10 {
            let sets = split_cpus(&cpus, n).unwrap();
            assert_eq!(sets.len(), n);
            assert_eq!(sets.concat(), cpus);
            let (lo, hi) = (
                sets.iter().map(Vec::len).min(),
                sets.iter().map(Vec::len).max(),
            );
            assert!(hi.unwrap() - lo.unwrap() <= 1);
        }
        assert!(split_cpus(&cpus, 0).is_err());
        assert!(split_cpus(&cpus, 11).is_err());
        assert!(split_cpus(&[], 1).is_err());
    }

    #[test]
    fn nodes_on_this_machine() {
        let allowed = allowed_cpus();
        assert!(!allowed.is_empty());
        assert!(allowed.windows(2).all(|w| w[0] < w[1]));
        let nodes = nodes();
        println!("allowed cpus {allowed:?}");
        for n in &nodes {
            println!("{n:?}");
        }
        assert!(!nodes.is_empty());
        assert!(nodes.windows(2).all(|w| w[0].id < w[1].id));
        for n in &nodes {
            assert!(!n.cpus.is_empty());
            assert!(n.cpus.iter().all(|c| allowed.contains(c)), "{n:?}");
            assert!(n.free_memory <= n.total_memory || n.total_memory == 0);
        }
        // Nodes do not share CPUs.
        let all: Vec<usize> = nodes.iter().flat_map(|n| n.cpus.clone()).collect();
        let mut dedup = all.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(dedup.len(), all.len());
    }

    #[test]
    fn odd_sys_contents_are_skipped() {
        let dir = std::env::temp_dir().join(format!("tessera-numa-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let node = |name: &str, cpulist: Option<&str>, meminfo: Option<&str>| {
            let d = dir.join(name);
            std::fs::create_dir_all(&d).unwrap();
            if let Some(c) = cpulist {
                std::fs::write(d.join("cpulist"), c).unwrap();
            }
            if let Some(m) = meminfo {
                std::fs::write(d.join("meminfo"), m).unwrap();
            }
        };
        let meminfo = "Node 1 MemTotal:  1000 kB\nNode 1 MemFree:  300 kB\n\
                       Node 1 Inactive(file): 100 kB\nNode 1 junk\n\n";
        node("node1", Some("4-7\n"), Some(meminfo));
        node("node0", Some("0-3\n"), None); // no meminfo: zeros
        node("node2", Some("garbage"), Some(meminfo)); // skipped
        node("node3", Some("\n"), Some(meminfo)); // memory only: skipped
        node("node4", None, None); // no cpulist: skipped
        node("node5", Some("8-9"), None); // none allowed: skipped
        node("nodeX", Some("0"), None); // not a node
        node("power", Some("0"), None);
        std::fs::write(dir.join("possible"), "0-5\n").unwrap();

        let got = sys_nodes(dir.to_str().unwrap(), &[1, 2, 5, 6]);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            got,
            [
                NumaNode {
                    id: 0,
                    cpus: vec![1, 2],
                    total_memory: 0,
                    free_memory: 0
                },
                NumaNode {
                    id: 1,
                    cpus: vec![5, 6],
                    total_memory: 1000 * 1024,
                    free_memory: 400 * 1024
                },
            ]
        );
        assert!(sys_nodes("/nonexistent/tessera", &[0]).is_empty());
    }

    #[test]
    fn bind_memory_never_panics() {
        assert_eq!(bind_memory(std::ptr::null(), 0, 0), Ok(()));
        // A page-aligned anonymous allocation.
        let len = 1 << 20;
        let layout = std::alloc::Layout::from_size_align(len, 1 << 16).unwrap();
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        let r = bind_memory(ptr, len, 0);
        println!("bind_memory(1 MiB, node 0): {r:?}");
        // Unaligned, inside the allocation.
        // SAFETY: within the allocation.
        let r2 = bind_memory(unsafe { ptr.add(100) }, 5000, 0);
        println!("bind_memory(unaligned, node 0): {r2:?}");
        // SAFETY: every byte was zeroed by alloc_zeroed and must still be.
        let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
        assert!(bytes.iter().all(|&b| b == 0));
        // A node that cannot exist, an unmapped range, a wrapping range.
        let r3 = bind_memory(ptr, len, 1000);
        println!("bind_memory(node 1000): {r3:?}");
        assert!(r3.is_err());
        // SAFETY: allocated above with this layout.
        unsafe { std::alloc::dealloc(ptr, layout) };
        assert!(bind_memory(usize::MAX as *const u8, 10, 0).is_err());
        assert!(bind_memory(4096 as *const u8, 4096, 0).is_err());
        assert!(bind_memory(ptr, len, 1 << 20).is_err());
        if let Err(e) = r {
            assert!(!e.is_empty());
        }
    }

    #[test]
    fn a_pinned_cpu_device_reports_its_node() {
        use crate::backend::{cpu::CpuBackend, Backend};
        let node = nodes().remove(0);
        let dev = CpuBackend::pinned("cpu0", 2, &node.cpus, Some(node.id));
        assert_eq!(dev.node(), Some(node.id));
        assert_eq!(dev.threads(), 2);
        assert_eq!(dev.pool().cpus(), &node.cpus[..]);
        println!("pin error: {:?}", dev.pool().pin_error());
        let info = dev.info();
        println!(
            "{}: {} / {} bytes",
            info.name, info.free_memory, info.total_memory
        );
        if let Some((total, _)) = node_memory(node.id) {
            assert_eq!(info.total_memory, total);
        }
        assert!(info.total_memory > 0);
        let plain = CpuBackend::new("cpu", 1);
        assert_eq!(plain.node(), None);
        assert!(plain.pool().cpus().is_empty());
    }
}
