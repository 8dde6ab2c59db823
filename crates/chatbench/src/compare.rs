//! Running a scenario once, or A/B against two servers: rounds alternate A B A B so that drift
//! of the machine (thermal, other load) hits both alike, and each figure is given as the ratio
//! of the means with the spread of the per-round ratios.

use crate::report::{compare, compare_table, Ratio, Report};
use crate::{backlog, group, idle, logins, pairs, Result, Settings};
use serde::Serialize;
use std::collections::BTreeMap;

/// Which scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One-to-one chat in pairs.
    Pairs,
    /// Group fan-out.
    Group,
    /// Idle logged-in connections.
    Idle,
    /// Registrations and logins per second.
    Logins,
    /// A sync login reading a stored backlog.
    Backlog,
}

/// Runs a scenario once.
pub fn run_once(kind: Kind, settings: &Settings) -> Result<Report> {
    match kind {
        Kind::Pairs => pairs::run(settings),
        Kind::Group => group::run(settings),
        Kind::Idle => idle::run(settings),
        Kind::Logins => logins::run(settings),
        Kind::Backlog => backlog::run(settings),
    }
}

/// The rounds on A and on B and the figure-by-figure ratios B/A.
#[derive(Debug, Serialize)]
pub struct Comparison {
    /// One report per round against A.
    pub a: Vec<Report>,
    /// One report per round against B.
    pub b: Vec<Report>,
    /// Figure name → means and ratio.
    pub ratios: BTreeMap<String, Ratio>,
}

impl Comparison {
    /// The human table.
    pub fn table(&self) -> String {
        let name = |r: &[Report]| {
            r.first()
                .map(|r| {
                    let layout = r
                        .layout
                        .as_ref()
                        .map_or(String::new(), |l| format!(" ({l})"));
                    format!("{}{layout}", r.targets.join(","))
                })
                .unwrap_or_default()
        };
        format!(
            "A = {}, B = {}, {} rounds each, alternating\n{}",
            name(&self.a),
            name(&self.b),
            self.a.len(),
            compare_table(&self.ratios)
        )
    }
}

/// Runs `rounds` rounds alternating A and B. Pairs and group set up once per server and
/// reuse the logged-in users for every round; idle, logins and backlog set up anew each round
/// (their setup is what they measure, or their users are used up).
pub fn run_compare(kind: Kind, a: &Settings, b: &Settings, rounds: usize) -> Result<Comparison> {
    let rounds = rounds.max(1);
    let mut out = Comparison {
        a: Vec::new(),
        b: Vec::new(),
        ratios: BTreeMap::new(),
    };
    let with_round = |s: &Settings, r: usize| Settings {
        round: r as u64,
        ..s.clone()
    };
    match kind {
        Kind::Pairs => {
            let (mut pa, mut pb) = (pairs::prepare(a)?, pairs::prepare(b)?);
            for r in 0..rounds {
                out.a.push(pairs::measure(&mut pa, &with_round(a, r))?);
                out.b.push(pairs::measure(&mut pb, &with_round(b, r))?);
            }
        }
        Kind::Group => {
            let (mut pa, mut pb) = (group::prepare(a)?, group::prepare(b)?);
            for r in 0..rounds {
                out.a.push(group::measure(&mut pa, &with_round(a, r))?);
                out.b.push(group::measure(&mut pb, &with_round(b, r))?);
            }
        }
        Kind::Idle | Kind::Logins | Kind::Backlog => {
            for r in 0..rounds {
                out.a.push(run_once(kind, &with_round(a, r))?);
                out.b.push(run_once(kind, &with_round(b, r))?);
            }
        }
    }
    out.ratios = compare(&out.a, &out.b);
    Ok(out)
}
