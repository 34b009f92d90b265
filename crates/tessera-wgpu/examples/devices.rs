//! Lists the wgpu devices and compiles every shader on each:
//! `cargo run --release -p tessera-wgpu --example devices`.

fn main() {
    let devs = tessera_wgpu::devices();
    if devs.is_empty() {
        println!("no wgpu adapter (install a Vulkan driver, e.g. mesa-vulkan-drivers)");
        return;
    }
    for d in devs {
        println!(
            "{:<10} {} [{}] {} — {:.1} GiB ({:.1} free), f16 {}, subgroups {}, max binding {} MiB, max buffer {} MiB",
            d.name,
            d.adapter,
            d.device_type,
            d.driver,
            d.total_memory as f64 / (1u64 << 30) as f64,
            d.free_memory as f64 / (1u64 << 30) as f64,
            d.shader_f16,
            d.subgroups,
            d.max_binding >> 20,
            d.max_buffer >> 20,
        );
        let t = std::time::Instant::now();
        match tessera_wgpu::WgpuBackend::new(&d.name).and_then(|b| b.compile_all()) {
            Ok(()) => println!("  every shader compiles ({:.2?})", t.elapsed()),
            Err(e) => println!("  {e}"),
        }
    }
}
