//! Hysteresis: fire after `fire_after` evaluations in a row, clear after `clear_after`
//! evaluations in a row below threshold × (1 − margin).

use super::*;

/// A VM doing `rate` port I/O exits per second (E1 fires above 5000; clears below 4500).
fn io(rate: f64) -> Inputs {
    let mut v = small_vm(100);
    v.observations.exit_rates = rates(&[("IO_INSTRUCTION", rate)]);
    inputs(host(), vec![v])
}

fn e1(engine: &mut Engine, rate: f64) -> Option<Recommendation> {
    engine
        .evaluate(&io(rate))
        .recommendations
        .into_iter()
        .find(|r| r.id == "E1")
}

#[test]
fn fires_after_consecutive_evaluations() {
    let mut engine = Engine::new(Thresholds::default());
    assert!(
        e1(&mut engine, 6000.0).is_none(),
        "one evaluation is not enough"
    );
    let rec = e1(&mut engine, 6000.0).expect("fires on the second");
    assert!(!rec.holding);

    // A broken run starts over.
    let mut engine = Engine::new(Thresholds::default());
    assert!(e1(&mut engine, 6000.0).is_none());
    assert!(e1(&mut engine, 4000.0).is_none());
    assert!(e1(&mut engine, 6000.0).is_none());
    assert!(e1(&mut engine, 6000.0).is_some());

    // Configurable.
    let t = Thresholds {
        fire_after: 3,
        ..Thresholds::default()
    };
    let mut engine = Engine::new(t);
    assert!(e1(&mut engine, 6000.0).is_none());
    assert!(e1(&mut engine, 6000.0).is_none());
    assert!(e1(&mut engine, 6000.0).is_some());
}

#[test]
fn clears_only_below_the_margin_for_consecutive_evaluations() {
    let mut engine = Engine::new(Thresholds::default());
    e1(&mut engine, 6000.0);
    e1(&mut engine, 6000.0).expect("firing");

    // Below 5000 but above 4500: held, however long, with the clearing threshold shown.
    for _ in 0..5 {
        let rec = e1(&mut engine, 4600.0).expect("held within the margin");
        assert!(rec.holding);
        assert_eq!(rec.evidence()[0].value, Value::Number(4600.0));
        assert_eq!(rec.evidence()[0].threshold, Value::Number(4500.0));
    }
    // Below 4500 once: still shown (the last evidence), not yet cleared.
    assert!(e1(&mut engine, 4400.0).is_some());
    // Back above the clearing threshold: the clearing count starts over.
    assert!(e1(&mut engine, 4600.0).is_some());
    assert!(e1(&mut engine, 4400.0).is_some());
    // Twice in a row below: cleared.
    assert!(e1(&mut engine, 4400.0).is_none());
    // And it must hold twice again to come back.
    assert!(e1(&mut engine, 6000.0).is_none());
    assert!(e1(&mut engine, 6000.0).is_some());
}

#[test]
fn firing_again_ends_holding() {
    let mut engine = Engine::new(Thresholds::default());
    e1(&mut engine, 6000.0);
    e1(&mut engine, 6000.0);
    assert!(e1(&mut engine, 4600.0).unwrap().holding);
    let rec = e1(&mut engine, 5500.0).unwrap();
    assert!(!rec.holding);
    assert_eq!(rec.evidence()[0].threshold, Value::Number(5000.0));
}

#[test]
fn margin_and_clear_count_are_configurable() {
    let t = Thresholds {
        clear_after: 1,
        clear_margin: 0.5,
        ..Thresholds::default()
    };
    let mut engine = Engine::new(t);
    e1(&mut engine, 6000.0);
    e1(&mut engine, 6000.0).expect("firing");
    assert!(e1(&mut engine, 2600.0).is_some(), "above 5000 × 0.5");
    assert!(
        e1(&mut engine, 2400.0).is_none(),
        "one evaluation below clears"
    );
}

#[test]
fn below_rules_relax_upwards() {
    // M4 fires below 50 % of guest RAM in THP, and clears above 55 %.
    let anon = |share: f64| {
        let mut v = small_vm(100);
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "test sizes"
        )]
        let bytes = (share * f64::from(1u32 << 30)) as u64;
        v.observations.anon_huge_pages_bytes = Some(bytes);
        inputs(host(), vec![v])
    };
    let m4 = |engine: &mut Engine, share: f64| {
        engine
            .evaluate(&anon(share))
            .recommendations
            .into_iter()
            .any(|r| r.id == "M4")
    };
    let mut engine = Engine::new(Thresholds::default());
    m4(&mut engine, 0.4);
    assert!(m4(&mut engine, 0.4));
    assert!(m4(&mut engine, 0.54));
    assert!(m4(&mut engine, 0.54));
    assert!(m4(&mut engine, 0.56));
    assert!(!m4(&mut engine, 0.56));
}

#[test]
fn a_forgotten_process_loses_its_advice_and_its_history() {
    let mut engine = Engine::new(Thresholds::default());
    e1(&mut engine, 6000.0);
    e1(&mut engine, 6000.0).expect("firing");
    engine.forget_processes(|pid| pid == 100);
    let gone = engine.evaluate(&inputs(host(), vec![]));
    assert!(
        gone.recommendations
            .iter()
            .all(|r| r.target.pid() != Some(100)),
        "no advice about a VM that is gone, not even while clearing: {:?}",
        gone.recommendations
    );
    // The pid comes back as another process: it must hold twice again.
    assert!(e1(&mut engine, 6000.0).is_none());
    assert!(e1(&mut engine, 6000.0).is_some());
    // Forgetting other pids changes nothing.
    engine.forget_processes(|pid| pid == 101);
    assert!(e1(&mut engine, 6000.0).is_some());
}
