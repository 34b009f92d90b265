//! Tests of `tessera_core::sample`: each stage of the sampler chain on
//! hand-made logits whose answer is worked out here independently (in f64,
//! without the crate's code), greedy ties, seeding, the drawn distribution
//! against the softmax, the penalty window, logit bias, every refused
//! setting, the no-allocation promise, and the streaming stop strings.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use tessera_core::sample::{SampleError, Sampler, SamplerConfig, StopOutput, StopStrings};
use tessera_testkit::rng::SplitMix64;

// ---------------------------------------------------------------- helpers

/// Every filter off, temperature 1, fixed seed: tests switch on one stage.
fn plain() -> SamplerConfig {
    SamplerConfig {
        temp: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        seed: Some(7),
        ..SamplerConfig::default()
    }
}

/// Ids of the candidates left after every stage but the pick, sorted.
fn survivors(cfg: SamplerConfig, logits: &[f32]) -> Vec<u32> {
    let mut s = Sampler::new(cfg, logits.len()).unwrap();
    let mut ids: Vec<u32> = s.filter(logits).unwrap().iter().map(|c| c.id).collect();
    ids.sort_unstable();
    ids
}

fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f64 = w.iter().sum();
    w.iter().map(|x| x / sum).collect()
}

fn ln_probs(p: &[f64]) -> Vec<f32> {
    p.iter().map(|x| x.ln() as f32).collect()
}

/// Token ids sorted by probability, highest first (lowest id on ties).
fn rank(p: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    idx
}

fn random_logits(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    (0..n).map(|_| r.normal() * scale).collect()
}

/// Observed frequencies of `n` draws; asserts each draw is in range.
fn frequencies(s: &mut Sampler, logits: &[f32], n: usize) -> Vec<f64> {
    let mut counts = vec![0usize; logits.len()];
    for _ in 0..n {
        counts[s.sample(logits).unwrap() as usize] += 1;
    }
    counts.iter().map(|&c| c as f64 / n as f64).collect()
}

/// Asserts observed frequencies match `expected` probabilities: maximum
/// absolute error below `max_abs`, and Pearson's chi-square (over tokens with
/// p > 0) below `chi2_max`; a token with p = 0 must never be drawn.
fn assert_matches(freq: &[f64], expected: &[f64], n: usize, max_abs: f64, chi2_max: f64) {
    let mut chi2 = 0.0;
    for (t, (&f, &p)) in freq.iter().zip(expected).enumerate() {
        assert!(
            (f - p).abs() < max_abs,
            "token {t}: frequency {f}, probability {p}"
        );
        if p == 0.0 {
            assert_eq!(f, 0.0, "token {t} has probability 0 but was drawn");
        } else {
            let e = p * n as f64;
            chi2 += (f * n as f64 - e).powi(2) / e;
        }
    }
    assert!(chi2 < chi2_max, "chi-square {chi2} >= {chi2_max}");
}

// --------------------------------------------------------------- defaults

#[test]
fn defaults_are_llama_cpp_defaults() {
    let d = SamplerConfig::default();
    assert_eq!(d.temp, 0.8);
    assert_eq!(d.top_k, 40);
    assert_eq!(d.top_p, 0.95);
    assert_eq!(d.min_p, 0.05);
    assert_eq!(d.typical_p, 1.0);
    assert_eq!(d.repeat_penalty, 1.0);
    assert_eq!(d.repeat_last_n, 64);
    assert_eq!(d.frequency_penalty, 0.0);
    assert_eq!(d.presence_penalty, 0.0);
    assert!(d.logit_bias.is_empty());
    assert_eq!(d.seed, None);
}

#[test]
fn unseeded_samplers_pick_a_seed_that_reproduces() {
    let logits = random_logits(1, 50, 2.0);
    let mut a = Sampler::new(SamplerConfig::default(), 50).unwrap();
    let seed = a.seed();
    let cfg = SamplerConfig {
        seed: Some(seed),
        ..SamplerConfig::default()
    };
    let mut b = Sampler::new(cfg, 50).unwrap();
    for _ in 0..100 {
        assert_eq!(a.sample(&logits).unwrap(), b.sample(&logits).unwrap());
    }
}

// ----------------------------------------------------------------- greedy

#[test]
fn greedy_takes_the_argmax() {
    let mut s = Sampler::new(SamplerConfig::greedy(), 6).unwrap();
    assert_eq!(s.sample(&[0.1, 2.0, -1.0, 3.0, 2.5, 0.0]).unwrap(), 3);
    assert_eq!(s.sample(&[-5.0, -4.0, -9.0, -4.5, -8.0, -7.0]).unwrap(), 1);
}

#[test]
fn greedy_ties_go_to_the_lowest_id() {
    let mut s = Sampler::new(SamplerConfig::greedy(), 5).unwrap();
    assert_eq!(s.sample(&[1.0, 3.0, 2.0, 3.0, 3.0]).unwrap(), 1);
    assert_eq!(s.sample(&[7.0, 7.0, 7.0, 7.0, 7.0]).unwrap(), 0);
    // Ties survive the filters too: top-k 1 must keep the lowest id.
    let cfg = SamplerConfig {
        top_k: 1,
        ..SamplerConfig::greedy()
    };
    let mut s = Sampler::new(cfg, 5).unwrap();
    assert_eq!(s.sample(&[0.0, 4.0, 1.0, 4.0, 4.0]).unwrap(), 1);
}

#[test]
fn zero_or_negative_temperature_is_greedy_with_default_filters() {
    let logits = random_logits(2, 300, 3.0);
    let argmax = rank(&logits.iter().map(|&l| l as f64).collect::<Vec<_>>())[0] as u32;
    for temp in [0.0, -1.0] {
        let cfg = SamplerConfig {
            temp,
            seed: Some(3),
            ..SamplerConfig::default()
        };
        let mut s = Sampler::new(cfg, 300).unwrap();
        for _ in 0..20 {
            assert_eq!(s.sample(&logits).unwrap(), argmax);
        }
    }
}

// ----------------------------------------------------------------- top-k

#[test]
fn top_k_keeps_the_k_highest_sorted() {
    let logits = [0.1, 2.0, -1.0, 3.0, 2.5, 0.0];
    let cfg = SamplerConfig {
        top_k: 3,
        ..plain()
    };
    let mut s = Sampler::new(cfg, 6).unwrap();
    let kept: Vec<u32> = s.filter(&logits).unwrap().iter().map(|c| c.id).collect();
    assert_eq!(kept, vec![3, 4, 1]);
    for k in [0, -1, 6, 100] {
        let all = survivors(
            SamplerConfig {
                top_k: k,
                ..plain()
            },
            &logits,
        );
        assert_eq!(all, vec![0, 1, 2, 3, 4, 5], "top_k = {k}");
    }
}

#[test]
fn top_k_on_a_large_vocabulary_matches_a_full_sort() {
    let n = 50_000;
    let logits = random_logits(4, n, 4.0);
    let as_f64: Vec<f64> = logits.iter().map(|&l| l as f64).collect();
    for k in [1, 40, 1000] {
        let mut want: Vec<u32> = rank(&as_f64)[..k].iter().map(|&i| i as u32).collect();
        want.sort_unstable();
        assert_eq!(
            survivors(
                SamplerConfig {
                    top_k: k as i32,
                    ..plain()
                },
                &logits
            ),
            want
        );
    }
}

#[test]
fn top_k_ties_at_the_cut_keep_the_lowest_ids() {
    // llama.cpp leaves this unspecified; tessera keeps the lowest ids so the
    // same logits always give the same survivors.
    let mut logits = vec![1.0f32; 5000];
    logits[4321] = 2.0;
    let mut want: Vec<u32> = (0..9).collect();
    want.push(4321);
    let cfg = SamplerConfig {
        top_k: 10,
        ..plain()
    };
    assert_eq!(survivors(cfg, &logits), want);
}

// ----------------------------------------------------------------- top-p

/// Reference nucleus: most likely first until the sum reaches `p`.
fn top_p_reference(probs: &[f64], p: f64) -> Vec<u32> {
    let mut cum = 0.0;
    let mut kept = Vec::new();
    for i in rank(probs) {
        kept.push(i as u32);
        cum += probs[i];
        if cum >= p {
            break;
        }
    }
    kept.sort_unstable();
    kept
}

#[test]
fn top_p_keeps_the_nucleus() {
    let probs = [0.1, 0.5, 0.15, 0.25];
    let logits = ln_probs(&probs);
    for (p, want) in [
        (0.0, vec![1]),
        (0.4, vec![1]),
        (0.7, vec![1, 3]),
        (0.8, vec![1, 2, 3]),
        (0.95, vec![0, 1, 2, 3]),
        (1.0, vec![0, 1, 2, 3]),
    ] {
        assert_eq!(top_p_reference(&probs, p), want, "reference, top_p = {p}");
        assert_eq!(
            survivors(
                SamplerConfig {
                    top_p: p as f32,
                    ..plain()
                },
                &logits
            ),
            want,
            "top_p = {p}"
        );
    }
}

#[test]
fn top_p_on_a_large_vocabulary_matches_the_reference() {
    // Over 1024 candidates the crate first sorts only the best 256; flat
    // logits (scale 0.5) need far more than 256 tokens to reach 0.9, sharp
    // ones (scale 6) fewer.
    for (seed, scale, p) in [(5, 0.5, 0.9), (6, 6.0, 0.9), (7, 6.0, 0.3)] {
        let logits = random_logits(seed, 20_000, scale);
        let probs = softmax(&logits.iter().map(|&l| l as f64).collect::<Vec<_>>());
        let want = top_p_reference(&probs, p);
        let got = survivors(
            SamplerConfig {
                top_p: p as f32,
                ..plain()
            },
            &logits,
        );
        // f32 sums in the crate against f64 here: allow the boundary token.
        let diff = got.len().abs_diff(want.len());
        assert!(
            diff <= 1,
            "seed {seed}: kept {} tokens, reference {}",
            got.len(),
            want.len()
        );
        let short = if got.len() < want.len() { &got } else { &want };
        let long = if got.len() < want.len() { &want } else { &got };
        assert!(
            short.iter().all(|t| long.contains(t)),
            "seed {seed}: different sets"
        );
        if seed == 5 {
            assert!(want.len() > 256, "the test must exercise the slow path");
        }
    }
}

// ----------------------------------------------------------------- min-p

#[test]
fn min_p_keeps_tokens_within_a_factor_of_the_best() {
    let probs = [0.05, 0.4, 0.3, 0.15, 0.1];
    let logits = ln_probs(&probs);
    for (min_p, want) in [
        (0.0, vec![0, 1, 2, 3, 4]),
        (0.2, vec![1, 2, 3, 4]), // p >= 0.08
        (0.3, vec![1, 2, 3]),    // p >= 0.12
        (0.5, vec![1, 2]),       // p >= 0.20
        (1.0, vec![1]),
    ] {
        let reference: Vec<u32> = (0..probs.len() as u32)
            .filter(|&t| probs[t as usize] >= min_p * 0.4)
            .collect();
        assert_eq!(reference, want, "reference, min_p = {min_p}");
        let cfg = SamplerConfig {
            min_p: min_p as f32,
            ..plain()
        };
        assert_eq!(survivors(cfg, &logits), want, "min_p = {min_p}");
    }
}

// ------------------------------------------------------------- typical-p

/// Reference locally typical set: rank by |surprisal - entropy|, keep until
/// the probability sum exceeds `p`.
fn typical_reference(probs: &[f64], p: f64) -> Vec<u32> {
    let h: f64 = probs.iter().map(|q| -q * q.ln()).sum();
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| {
        let da = (-probs[a].ln() - h).abs();
        let db = (-probs[b].ln() - h).abs();
        da.total_cmp(&db)
    });
    let mut cum = 0.0;
    let mut kept = Vec::new();
    for i in idx {
        kept.push(i as u32);
        cum += probs[i];
        if cum > p {
            break;
        }
    }
    kept.sort_unstable();
    kept
}

#[test]
fn typical_p_keeps_the_locally_typical_tokens() {
    // H = 1.2799; |-ln p - H| = 0.364, 0.076, 0.330, 1.023: the most likely
    // token (0) is less typical than tokens 1 and 2.
    let probs = [0.4, 0.3, 0.2, 0.1];
    let logits = ln_probs(&probs);
    for (p, want) in [
        (0.0, vec![1]),
        (0.45, vec![1, 2]),
        (0.6, vec![0, 1, 2]),
        (0.95, vec![0, 1, 2, 3]),
    ] {
        assert_eq!(
            typical_reference(&probs, p),
            want,
            "reference, typical_p = {p}"
        );
        let cfg = SamplerConfig {
            typical_p: p as f32,
            ..plain()
        };
        assert_eq!(survivors(cfg, &logits), want, "typical_p = {p}");
    }
    // A banned token (probability 0) changes nothing (llama.cpp's entropy
    // would turn NaN here).
    let mut with_banned = logits.clone();
    with_banned.push(f32::NEG_INFINITY);
    let cfg = SamplerConfig {
        typical_p: 0.45,
        ..plain()
    };
    assert_eq!(survivors(cfg, &with_banned), vec![1, 2]);
    // Greedy after typical-p picks from the typical set, as llama.cpp's chain.
    let cfg = SamplerConfig {
        typical_p: 0.45,
        ..SamplerConfig::greedy()
    };
    assert_eq!(Sampler::new(cfg, 4).unwrap().sample(&logits).unwrap(), 1);
}

#[test]
fn top_p_and_typical_p_boundaries_follow_llama_cpp() {
    // Two equal logits: probabilities exactly 0.5 each. llama.cpp's top-p
    // stops once the sum is >= p, typical-p only once it is > p.
    let logits = [0.0f32, 0.0];
    assert_eq!(top_p_reference(&[0.5, 0.5], 0.5), vec![0]);
    assert_eq!(typical_reference(&[0.5, 0.5], 0.5), vec![0, 1]);
    assert_eq!(
        survivors(
            SamplerConfig {
                top_p: 0.5,
                ..plain()
            },
            &logits
        ),
        vec![0]
    );
    assert_eq!(
        survivors(
            SamplerConfig {
                typical_p: 0.5,
                ..plain()
            },
            &logits
        ),
        vec![0, 1]
    );
}

// ----------------------------------------------------------- temperature

#[test]
fn temperature_scales_the_softmax() {
    let logits = [1.0f32, 2.0, 0.5, 3.0, -1.0];
    for temp in [0.25f32, 0.7, 1.0, 2.5] {
        let mut s = Sampler::new(SamplerConfig { temp, ..plain() }, 5).unwrap();
        let out = s.filter(&logits).unwrap().to_vec();
        let mut got = [0.0; 5];
        let p = softmax(&out.iter().map(|c| c.logit as f64).collect::<Vec<_>>());
        for (c, q) in out.iter().zip(p) {
            got[c.id as usize] = q;
        }
        let want = softmax(
            &logits
                .iter()
                .map(|&l| l as f64 / temp as f64)
                .collect::<Vec<_>>(),
        );
        for t in 0..5 {
            assert!(
                (got[t] - want[t]).abs() < 1e-5,
                "temp {temp}, token {t}: {} vs {}",
                got[t],
                want[t]
            );
        }
    }
}

#[test]
fn a_tiny_temperature_does_not_overflow() {
    let mut s = Sampler::new(
        SamplerConfig {
            temp: 1e-30,
            ..plain()
        },
        3,
    )
    .unwrap();
    for _ in 0..50 {
        assert_eq!(s.sample(&[1e30, 3e30, -2e30]).unwrap(), 1);
    }
}

// ---------------------------------------------------------- distribution

#[test]
fn draws_follow_the_softmax() {
    // 200k draws: the standard error of a frequency is at most 0.0011, so
    // 0.005 is over 4 sigma; 20.5 is chi-square's 0.999 quantile for 5 dof.
    let logits = [1.0f32, 2.0, 0.5, 3.0, -1.0, 0.0];
    let n = 200_000;
    let mut s = Sampler::new(plain(), 6).unwrap();
    let want = softmax(&logits.iter().map(|&l| l as f64).collect::<Vec<_>>());
    assert_matches(&frequencies(&mut s, &logits, n), &want, n, 0.005, 20.5);
}

#[test]
fn draws_follow_top_k_then_temperature() {
    // top-k 3 keeps tokens 3, 1, 0 (logits 3, 2, 1.5); temperature 0.7 over
    // them; the other tokens have probability 0. 13.8: chi-square 0.999, 2 dof.
    let logits = [1.5f32, 2.0, 0.5, 3.0, -1.0, 0.0];
    let cfg = SamplerConfig {
        top_k: 3,
        temp: 0.7,
        ..plain()
    };
    let n = 100_000;
    let mut s = Sampler::new(cfg, 6).unwrap();
    let scaled: Vec<f64> = [1.5, 2.0, 3.0].iter().map(|l| l / 0.7).collect();
    let p = softmax(&scaled);
    let want = [p[0], p[1], 0.0, p[2], 0.0, 0.0];
    assert_matches(&frequencies(&mut s, &logits, n), &want, n, 0.006, 13.8);
}

#[test]
fn draws_follow_the_default_chain() {
    // top-p 0.95 keeps 0.4, 0.3, 0.2, 0.06 (sum 0.96); min-p 0.05 keeps
    // p >= 0.02, all four; temperature 0.8 gives weights p^(1/0.8).
    // 16.3: chi-square 0.999, 3 dof.
    let probs = [0.4, 0.3, 0.2, 0.06, 0.03, 0.01];
    let logits = ln_probs(&probs);
    let cfg = SamplerConfig {
        seed: Some(11),
        ..SamplerConfig::default()
    };
    let n = 100_000;
    let mut s = Sampler::new(cfg, 6).unwrap();
    let w: Vec<f64> = probs[..4].iter().map(|p| p.powf(1.0 / 0.8)).collect();
    let sum: f64 = w.iter().sum();
    let want = [w[0] / sum, w[1] / sum, w[2] / sum, w[3] / sum, 0.0, 0.0];
    assert_matches(&frequencies(&mut s, &logits, n), &want, n, 0.006, 16.3);
}

// ------------------------------------------------------------ seeding

fn stream(seed: u64, steps: usize) -> Vec<u32> {
    let cfg = SamplerConfig {
        seed: Some(seed),
        temp: 1.5,
        ..SamplerConfig::default()
    };
    let mut s = Sampler::new(cfg, 1000).unwrap();
    (0..steps as u64)
        .map(|step| s.sample(&random_logits(100 + step, 1000, 1.0)).unwrap())
        .collect()
}

#[test]
fn same_seed_same_tokens() {
    assert_eq!(stream(42, 200), stream(42, 200));
}

#[test]
fn different_seeds_differ() {
    let a = stream(1, 200);
    let b = stream(2, 200);
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    // With ~40 candidates a step, agreement is rare; 200 equal steps would
    // mean the seed is ignored.
    assert!(same < 100, "{same} of 200 tokens agree");
}

#[test]
fn reset_restarts_the_stream() {
    let logits = random_logits(9, 100, 1.0);
    let cfg = SamplerConfig {
        seed: Some(5),
        ..plain()
    };
    let mut s = Sampler::new(cfg, 100).unwrap();
    let first: Vec<u32> = (0..50).map(|_| s.sample(&logits).unwrap()).collect();
    s.reset();
    let again: Vec<u32> = (0..50).map(|_| s.sample(&logits).unwrap()).collect();
    assert_eq!(first, again);
    assert_eq!(s.seed(), 5);
}

// ----------------------------------------------------------- penalties

/// Logits after bias and penalties only (greedy: no temperature applied).
fn penalised(cfg: SamplerConfig, accepted: &[u32], logits: &[f32]) -> Vec<f32> {
    let mut s = Sampler::new(cfg, logits.len()).unwrap();
    for &t in accepted {
        s.accept(t);
    }
    let mut out = vec![f32::NAN; logits.len()];
    for c in s.filter(logits).unwrap() {
        out[c.id as usize] = c.logit;
    }
    out
}

fn with_penalties(last_n: i32) -> SamplerConfig {
    SamplerConfig {
        repeat_penalty: 2.0,
        frequency_penalty: 0.5,
        presence_penalty: 0.25,
        repeat_last_n: last_n,
        ..SamplerConfig::greedy()
    }
}

#[test]
fn penalties_follow_llama_cpp_formula() {
    // token 0 (positive, once): 2 / 2 - (1 * 0.5 + 0.25) = 0.25
    // token 1 (negative, twice): -2 * 2 - (2 * 0.5 + 0.25) = -5.25
    // token 2 (zero, once): 0 * 2 - 0.75 = -0.75; token 3 not seen.
    let got = penalised(with_penalties(64), &[0, 1, 1, 2], &[2.0, -2.0, 0.0, 0.5]);
    assert_eq!(got, vec![0.25, -5.25, -0.75, 0.5]);
}

#[test]
fn penalties_only_see_the_window() {
    let logits = [1.0f32, 1.0, 1.0, 1.0];
    // Window 2 after 0, 1, 2: token 0 has left it.
    let got = penalised(with_penalties(2), &[0, 1, 2], &logits);
    assert_eq!(got, vec![1.0, -0.25, -0.25, 1.0]);
    // A repeat inside the window counts twice; the first 3 fell out.
    let got = penalised(with_penalties(3), &[3, 3, 3, 1], &logits);
    assert_eq!(got, vec![1.0, -0.25, 1.0, -0.75]);
    // -1: the whole history, however long.
    let mut history = vec![0u32];
    history.extend([3u32; 500]);
    let got = penalised(with_penalties(-1), &history, &logits);
    assert_eq!(got, vec![-0.25, 1.0, 1.0, 0.5 - 500.0 * 0.5 - 0.25]);
    // 0: off.
    assert_eq!(
        penalised(with_penalties(0), &[0, 1, 2], &logits),
        logits.to_vec()
    );
}

#[test]
fn penalties_change_the_greedy_pick_and_reset_forgets() {
    let logits = [3.0f32, 2.0, 1.0];
    let cfg = SamplerConfig {
        repeat_penalty: 2.0,
        ..SamplerConfig::greedy()
    };
    let mut s = Sampler::new(cfg, 3).unwrap();
    assert_eq!(s.sample(&logits).unwrap(), 0);
    s.accept(0); // 3 / 2 = 1.5 < 2
    assert_eq!(s.sample(&logits).unwrap(), 1);
    s.reset();
    assert_eq!(s.sample(&logits).unwrap(), 0);
}

#[test]
fn out_of_vocabulary_accepts_take_a_slot_but_penalise_nothing() {
    let logits = [1.0f32, 1.0];
    let got = penalised(with_penalties(2), &[0, 7, u32::MAX], &logits);
    assert_eq!(got, vec![1.0, 1.0]);
}

// ----------------------------------------------------------- logit bias

#[test]
fn logit_bias_adds_and_bans() {
    let cfg = SamplerConfig {
        logit_bias: vec![(2, 1.5), (2, 0.25), (0, -1.0)],
        ..SamplerConfig::greedy()
    };
    assert_eq!(penalised(cfg, &[], &[1.0, 2.0, 0.5]), vec![0.0, 2.0, 2.25]);

    let logits = [0.0f32, 5.0, 4.0, 1.0];
    let ban = SamplerConfig {
        logit_bias: vec![(1, f32::NEG_INFINITY)],
        ..plain()
    };
    let mut s = Sampler::new(ban.clone(), 4).unwrap();
    for _ in 0..5000 {
        assert_ne!(s.sample(&logits).unwrap(), 1);
    }
    let greedy_ban = SamplerConfig { temp: 0.0, ..ban };
    assert_eq!(
        Sampler::new(greedy_ban, 4)
            .unwrap()
            .sample(&logits)
            .unwrap(),
        2
    );
}

#[test]
fn banning_every_token_is_an_error() {
    let cfg = SamplerConfig {
        logit_bias: vec![(0, f32::NEG_INFINITY), (1, f32::NEG_INFINITY)],
        ..SamplerConfig::default()
    };
    let mut s = Sampler::new(cfg, 3).unwrap();
    assert_eq!(
        s.sample(&[1.0, 2.0, f32::NEG_INFINITY]),
        Err(SampleError::AllTokensBanned)
    );
    // A masked (-inf) logit is fine while something is left.
    assert_eq!(s.sample(&[1.0, 2.0, 0.0]).unwrap(), 2);
}

// ------------------------------------------------------- refused input

#[test]
fn every_invalid_setting_is_an_error() {
    type Edit = fn(&mut SamplerConfig);
    let cases: &[(&str, Edit)] = &[
        ("temp", |c| c.temp = f32::NAN),
        ("temp", |c| c.temp = f32::INFINITY),
        ("top_p", |c| c.top_p = -0.1),
        ("top_p", |c| c.top_p = 1.01),
        ("top_p", |c| c.top_p = f32::NAN),
        ("min_p", |c| c.min_p = -0.5),
        ("min_p", |c| c.min_p = 2.0),
        ("min_p", |c| c.min_p = f32::NAN),
        ("typical_p", |c| c.typical_p = -1.0),
        ("typical_p", |c| c.typical_p = 1.5),
        ("typical_p", |c| c.typical_p = f32::NAN),
        ("repeat_penalty", |c| c.repeat_penalty = 0.0),
        ("repeat_penalty", |c| c.repeat_penalty = -1.1),
        ("repeat_penalty", |c| c.repeat_penalty = f32::NAN),
        ("repeat_penalty", |c| c.repeat_penalty = f32::INFINITY),
        ("repeat_last_n", |c| c.repeat_last_n = -2),
        ("frequency_penalty", |c| c.frequency_penalty = f32::NAN),
        ("frequency_penalty", |c| {
            c.frequency_penalty = f32::NEG_INFINITY
        }),
        ("presence_penalty", |c| c.presence_penalty = f32::NAN),
        ("presence_penalty", |c| c.presence_penalty = f32::INFINITY),
    ];
    for (field, edit) in cases {
        let mut cfg = SamplerConfig::default();
        edit(&mut cfg);
        match Sampler::new(cfg.clone(), 10) {
            Err(e @ SampleError::InvalidSetting { name, .. }) => {
                assert_eq!(name, *field);
                assert!(e.to_string().contains(field), "message {e} names {field}");
            }
            other => panic!("{field}: {cfg:?} gave {other:?}"),
        }
    }
}

#[test]
fn invalid_bias_and_vocabulary_are_errors() {
    let bias = |token, bias| SamplerConfig {
        logit_bias: vec![(token, bias)],
        ..SamplerConfig::default()
    };
    assert_eq!(
        Sampler::new(bias(10, 1.0), 10).unwrap_err(),
        SampleError::BiasTokenOutOfRange {
            token: 10,
            n_vocab: 10
        }
    );
    assert!(matches!(
        Sampler::new(bias(3, f32::NAN), 10),
        Err(SampleError::InvalidBias { token: 3, .. })
    ));
    assert!(matches!(
        Sampler::new(bias(3, f32::INFINITY), 10),
        Err(SampleError::InvalidBias { token: 3, .. })
    ));
    assert!(Sampler::new(bias(9, f32::NEG_INFINITY), 10).is_ok());
    assert_eq!(
        Sampler::new(SamplerConfig::default(), 0).unwrap_err(),
        SampleError::InvalidVocabSize(0)
    );
}

#[test]
fn bad_logits_are_errors() {
    let mut s = Sampler::new(SamplerConfig::default(), 4).unwrap();
    assert_eq!(
        s.sample(&[0.0; 5]),
        Err(SampleError::LogitsLength { got: 5, n_vocab: 4 })
    );
    assert!(matches!(
        s.sample(&[0.0, f32::NAN, 0.0, 0.0]),
        Err(SampleError::InvalidLogit { token: 1, .. })
    ));
    assert!(matches!(
        s.sample(&[0.0, 0.0, 0.0, f32::INFINITY]),
        Err(SampleError::InvalidLogit { token: 3, .. })
    ));
    // The sampler is still usable afterwards.
    assert_eq!(s.sample(&[0.0, 9.0, f32::NEG_INFINITY, 0.0]).unwrap(), 1);
}

// ----------------------------------------------------------- allocation

struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[test]
fn sample_does_not_allocate_after_the_first_call() {
    let n = 262_144;
    let steps: Vec<Vec<f32>> = (0..4).map(|i| random_logits(200 + i, n, 2.0)).collect();
    let configs = [
        SamplerConfig {
            seed: Some(1),
            ..SamplerConfig::default()
        },
        SamplerConfig {
            seed: Some(1),
            top_k: 0,
            typical_p: 0.9,
            top_p: 0.9,
            repeat_penalty: 1.3,
            frequency_penalty: 0.1,
            logit_bias: vec![(5, -1.0)],
            ..SamplerConfig::default()
        },
        SamplerConfig::greedy(),
    ];
    for cfg in configs {
        let mut s = Sampler::new(cfg.clone(), n).unwrap();
        for t in 0..64 {
            s.accept(t * 97);
        }
        // Warm-up: every buffer reaches its largest size.
        for logits in &steps {
            s.sample(logits).unwrap();
        }
        let before = ALLOCATIONS.with(Cell::get);
        for logits in steps.iter().cycle().take(12) {
            let token = s.sample(logits).unwrap();
            s.accept(token); // the window is full: no growth either
        }
        let allocated = ALLOCATIONS.with(Cell::get) - before;
        assert_eq!(allocated, 0, "{cfg:?}");
    }
}

// ---------------------------------------------------------- stop strings

fn stops(list: &[&str]) -> StopStrings {
    StopStrings::new(list.iter().map(|s| s.to_string()).collect()).unwrap()
}

fn out(text: &str, stopped: bool) -> StopOutput {
    StopOutput {
        text: text.to_string(),
        stopped,
    }
}

#[test]
fn stop_string_split_across_pieces() {
    let mut s = stops(&["</s>"]);
    assert_eq!(s.push("Hello <"), out("Hello ", false));
    assert_eq!(s.push("/"), out("", false));
    assert_eq!(s.push("s> and more"), out("", true));
    assert!(s.is_stopped());
    assert_eq!(s.push("ignored"), out("", true));
    assert_eq!(s.finish(), "");
}

#[test]
fn held_text_is_released_when_it_stops_matching() {
    let mut s = stops(&["</s>"]);
    assert_eq!(s.push("a </"), out("a ", false));
    assert_eq!(s.push("b>"), out("</b>", false));
    assert_eq!(s.push("x<"), out("x", false));
    assert_eq!(s.finish(), "<");
}

#[test]
fn text_before_the_stop_in_the_same_piece_is_emitted() {
    let mut s = stops(&["STOP"]);
    assert_eq!(s.push("one two STOP three"), out("one two ", true));
}

#[test]
fn the_earliest_stop_string_wins() {
    let mut s = stops(&["world", "lo w", "xyz"]);
    assert_eq!(s.push("hello world"), out("hel", true));
}

#[test]
fn stop_strings_split_between_multibyte_characters() {
    let mut s = stops(&["日本語"]);
    assert_eq!(s.push("今日は日"), out("今日は", false));
    assert_eq!(s.push("本"), out("", false));
    assert_eq!(s.push("語です"), out("", true));

    let mut s = stops(&["🙂🙂"]);
    assert_eq!(s.push("x🙂"), out("x", false));
    assert_eq!(s.push("🙂y"), out("", true));

    // A held-back multi-byte character that does not complete the stop.
    let mut s = stops(&["é!"]);
    assert_eq!(s.push("café"), out("caf", false));
    assert_eq!(s.push("s"), out("és", false));
    assert_eq!(s.finish(), "");
}

#[test]
fn random_splits_give_the_text_before_the_first_stop() {
    let texts = [
        (
            "naïve café — 日本語のテキスト🙂 end",
            vec!["テキスト", "zzz"],
            Some("naïve café — 日本語の"),
        ),
        ("a🙂b🙂🙂c</s>d", vec!["🙂🙂", "</s>"], Some("a🙂b")),
        ("ééééé!é", vec!["éé!", "ééé?"], Some("ééé")),
        ("no stop here, ünïcödé", vec!["STOP", "ü!"], None),
    ];
    let mut rng = SplitMix64::new(99);
    for (text, list, want) in texts {
        let bounds: Vec<usize> = (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        for _ in 0..200 {
            // Cut at random character boundaries.
            let mut cuts: Vec<usize> = (0..rng.below(6))
                .map(|_| bounds[rng.below(bounds.len())])
                .collect();
            cuts.extend([0, text.len()]);
            cuts.sort_unstable();
            let mut s = stops(&list);
            let mut emitted = String::new();
            let mut stopped = false;
            for w in cuts.windows(2) {
                let o = s.push(&text[w[0]..w[1]]);
                emitted.push_str(&o.text);
                stopped |= o.stopped;
            }
            emitted.push_str(&s.finish());
            assert_eq!(stopped, want.is_some(), "{text:?} cut at {cuts:?}");
            assert_eq!(emitted, want.unwrap_or(text), "{text:?} cut at {cuts:?}");
        }
    }
}

#[test]
fn empty_stop_strings_are_refused_and_no_stops_pass_everything() {
    assert_eq!(
        StopStrings::new(vec!["ok".into(), String::new()]).unwrap_err(),
        SampleError::EmptyStopString { index: 1 }
    );
    let mut s = stops(&[]);
    assert_eq!(s.push("anything </s>"), out("anything </s>", false));
    assert_eq!(s.finish(), "");
}
