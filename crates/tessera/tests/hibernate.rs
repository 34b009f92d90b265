//! Hibernation through the SDK on SmolLM2 Q4_1.
//!
//! - A budget of 2 resident conversations: 8 conversations taking turns in
//!   alternation (3 turns each) give every reply of a run without a budget,
//!   never more than 2 resident, each turn restoring from a file (no
//!   rebuild) and evaluating only the tokens it would have evaluated
//!   without hibernation.
//! - `Conversation::hibernate`, `residency`, an idle timeout, and a damaged
//!   file rebuilt from the history with the same reply.
//!
//! Skipped without the model unless `TESSERA_STRICT=1`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tessera::{Conversation, ConversationOptions, HibernateOptions, LoadOptions, Model, Residency};
use tessera_testkit::env;

const N_CONV: usize = 8;
const TURNS: usize = 3;

fn opts(i: usize) -> ConversationOptions {
    ConversationOptions::default()
        .system(format!("You are assistant number {i}. Answer briefly."))
        .greedy()
        .max_tokens(8)
}

fn question(conv: usize, turn: usize) -> String {
    let topics = [
        "rivers", "birds", "stars", "bread", "trains", "rain", "chess", "salt",
    ];
    format!(
        "Tell me one fact about {} (part {}).",
        topics[conv],
        turn + 1
    )
}

fn dir(tag: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("sdk-hibernate-{tag}"));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn load(hibernation: HibernateOptions) -> Option<Model> {
    let path = env::real_model("SmolLM2-135M-Instruct.Q4_1.gguf")?;
    let opts = LoadOptions::default()
        .threads(2)
        .context(512)
        .hibernation(hibernation);
    Some(Model::load_blocking(&path.to_string_lossy(), opts).unwrap())
}

/// Every reply's text and evaluated-token count, turn by turn, the
/// conversations taking turns in alternation.
fn alternate(model: &Model) -> Vec<(String, usize)> {
    let mut convs: Vec<_> = (0..N_CONV)
        .map(|i| Conversation::with_options(model, opts(i)))
        .collect();
    let mut out = Vec::new();
    for turn in 0..TURNS {
        for (i, c) in convs.iter_mut().enumerate() {
            let r = c.submit_blocking(question(i, turn)).unwrap();
            out.push((r.text, r.usage.evaluated_tokens));
        }
    }
    out
}

#[test]
fn eight_conversations_in_two_resident_slots_stay_correct() {
    let Some(free) = load(HibernateOptions::default()) else {
        return;
    };
    let t0 = std::time::Instant::now();
    let want = alternate(&free);
    let t_free = t0.elapsed();
    drop(free);
    let files = dir("budget");
    let budget = load(HibernateOptions {
        dir: Some(files.clone()),
        max_resident: Some(2),
        idle: None,
    })
    .unwrap();
    let t0 = std::time::Instant::now();
    let got = alternate(&budget);
    eprintln!(
        "without a budget {t_free:?}, with a budget of 2 {:?}",
        t0.elapsed()
    );
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        let (conv, turn) = (k % N_CONV, k / N_CONV);
        assert_eq!(g.0, w.0, "conversation {conv}, turn {turn}: reply");
        assert_eq!(
            g.1, w.1,
            "conversation {conv}, turn {turn}: evaluated tokens"
        );
    }
    let st = budget.residency_stats();
    eprintln!("{st:?}");
    assert!(st.peak_resident <= 2, "{st:?}");
    // Every turn after the first round found its conversation hibernated.
    assert_eq!(st.restores, (N_CONV * (TURNS - 1)) as u64, "{st:?}");
    assert_eq!(st.rebuilds, 0, "{st:?}");
    assert!(st.hibernations >= st.restores, "{st:?}");
}

#[test]
fn hibernate_idle_and_damaged_file() {
    let files = dir("explicit");
    let Some(model) = load(HibernateOptions {
        dir: Some(files.clone()),
        max_resident: None,
        idle: Some(Duration::from_millis(300)),
    }) else {
        return;
    };
    let mut plain = Conversation::with_options(&model, opts(0));
    let want: Vec<String> = (0..3)
        .map(|t| plain.submit_blocking(question(0, t)).unwrap().text)
        .collect();
    drop(plain);

    let mut c = Conversation::with_options(&model, opts(0));
    // Nothing to hibernate before the first turn.
    c.hibernate_blocking().unwrap();
    assert_eq!(c.residency(), Residency::Resident);
    assert_eq!(c.submit_blocking(question(0, 0)).unwrap().text, want[0]);
    c.hibernate_blocking().unwrap();
    assert_eq!(c.residency(), Residency::Hibernated);
    // Damage the file: the next turn rebuilds from the history.
    let file = std::fs::read_dir(&files)
        .unwrap()
        .next()
        .expect("one hibernation file")
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&file, bytes).unwrap();
    let r = c.submit_blocking(question(0, 1)).unwrap();
    assert_eq!(r.text, want[1]);
    let st = model.residency_stats();
    assert_eq!(
        (st.hibernations, st.rebuilds, st.restores),
        (1, 1, 0),
        "{st:?}"
    );
    // Idle past the timeout: hibernated on its own, restored by the turn.
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(c.residency(), Residency::Hibernated);
    assert_eq!(c.submit_blocking(question(0, 2)).unwrap().text, want[2]);
    let st = model.residency_stats();
    assert_eq!((st.hibernations, st.restores), (2, 1), "{st:?}");
    drop(c);
    // The conversation's file goes with it.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(std::fs::read_dir(&files).unwrap().count(), 0);
}
