//! Discovery on this machine: with no CUDA driver (or no GPU) the backend
//! says "no CUDA device" and lists nothing — never a panic. With a device,
//! it is listed with a name, memory and compute capability and opens.
//! `TESSERA_REQUIRE_CUDA=1` makes the absence of a device a failure (for a
//! GPU machine's CI).

use tessera_core::backend::{provided_devices, BackendProvider};
use tessera_cuda::{probe, register, CudaBackend, CudaProvider};

#[test]
fn discovery_never_panics() {
    let require = std::env::var("TESSERA_REQUIRE_CUDA").is_ok_and(|v| v == "1");
    match probe() {
        Ok(devs) => {
            assert!(!devs.is_empty());
            for d in &devs {
                eprintln!(
                    "{}: {} ({} MiB, sm_{}{}, {:.0} GB/s)",
                    d.name,
                    d.gpu,
                    d.total_memory >> 20,
                    d.compute_capability.0,
                    d.compute_capability.1,
                    d.bandwidth_gbs
                );
                assert!(d.name.starts_with("cuda:") && d.total_memory > 0);
                assert!(d.compute_capability.0 >= 3);
            }
            let b = CudaBackend::new(&devs[0].name).expect("opening the first device");
            assert_eq!(b.gpu().name, devs[0].name);
        }
        Err(e) => {
            let msg = e.to_string();
            eprintln!("skipped: {msg}");
            assert!(!require, "TESSERA_REQUIRE_CUDA=1 but {msg}");
            assert!(msg.starts_with("no CUDA device"), "{msg}");
            assert!(tessera_cuda::devices().is_empty());
            // The provider lists nothing and refuses cuda:0 with the same words.
            let p = CudaProvider::default();
            assert!(p.devices().is_empty());
            let err = p
                .open("cuda:0")
                .err()
                .expect("cuda:0 opened without a device");
            assert!(err.to_string().contains("no CUDA device"), "{err}");
            register();
            assert!(!provided_devices().iter().any(|d| d.starts_with("cuda")));
        }
    }
}

#[test]
fn bad_names_are_errors() {
    // Without devices the name is never reached; with them, cuda:999 is not one.
    let e = CudaBackend::new("cuda:999").err().expect("cuda:999 opened");
    let msg = e.to_string();
    assert!(msg.contains("no CUDA device"), "{msg}");
}
