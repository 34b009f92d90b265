//! `TESSERA_PROFILE=1`: wall time per kind of node (the node name without
//! its `-<layer>` suffix), summed over every step and printed to stderr
//! when the CPU backend is dropped — where a step's time goes, like
//! `GGML_SCHED`'s debug output or a perf profile grouped by op.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Whether `TESSERA_PROFILE` is set (and not `0`).
pub(super) fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("TESSERA_PROFILE").is_some_and(|v| v != "0"))
}

/// Time and count per node kind.
#[derive(Default)]
pub(super) struct Profile {
    by_kind: Mutex<HashMap<String, (Duration, u64)>>,
}

impl Profile {
    /// Adds one run of node `name` that took `t`.
    pub(super) fn add(&self, name: &str, t: Duration) {
        let kind = match name.rsplit_once('-') {
            Some((k, layer)) if layer.bytes().all(|b| b.is_ascii_digit()) => k,
            _ => name,
        };
        let mut m = self.by_kind.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.entry(kind.to_string()).or_default();
        e.0 += t;
        e.1 += 1;
    }

    /// The table, largest first, or `None` when nothing ran.
    pub(super) fn report(&self, device: &str) -> Option<String> {
        let m = self.by_kind.lock().unwrap_or_else(|e| e.into_inner());
        if m.is_empty() {
            return None;
        }
        let total: Duration = m.values().map(|v| v.0).sum();
        let mut rows: Vec<_> = m.iter().collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.1 .0));
        let mut s = format!(
            "tessera_profile: {device}, {:.3} s in nodes\n",
            total.as_secs_f64()
        );
        for (k, (t, n)) in rows {
            s += &format!(
                "tessera_profile: {k:>20} {:>9.3} ms {:>5.1} % {n:>8} runs\n",
                t.as_secs_f64() * 1e3,
                100.0 * t.as_secs_f64() / total.as_secs_f64().max(1e-12)
            );
        }
        Some(s)
    }
}
