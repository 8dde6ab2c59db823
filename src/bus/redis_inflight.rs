//! The publisher's rounds in flight: what each round sent on the connection, which answers it
//! still waits for, and what those answers mean.
//!
//! The publisher sends a new round while earlier rounds' answers are still on their way
//! (pipelined rounds), so the answers of several rounds are outstanding at once. Redis
//! answers the commands of one connection in the order they came, so one FIFO of expected
//! answers ([`Expect`]) says which round and which part each answer belongs to. A round is
//! done when its last answer came: each of its requests' `done` is called then, once.
//!
//! **Parts.** A round is the script call for the recipients the presence cache does not know
//! (or may not use) and one `PUBLISH` per server for those it knows. A `PUBLISH` that reaches
//! nobody (the server is gone) forgets that server's cache entries and sends its parts
//! through the script at once: one more answer for that round, behind the answers of the
//! rounds sent since (those rounds' recipients on that server may thus get their messages
//! before the earlier ones sent again; the receiving server sees the gap in seq and reads the
//! log, see `Outbox::push`).
//!
//! **A cut connection.** When the connection fails, every round in flight is taken out:
//! one that got no answer yet, on a connection found closed, may go again once on a new
//! connection, in its order ([`InFlight::cut`]); the others fail. Redis may have run a round
//! whose answer was lost: sent again, its messages arrive twice, and receivers drop the
//! second copy by seq.

use super::redis_route::{add_message, encode_direct};
use super::{BusError, PublishDone};
use bytes::Bytes;
use clusterchat_proto::UserId;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a cached directory entry is used without a lookup.
pub(super) const CACHE_TTL: Duration = Duration::from_secs(2);
/// Most rounds in flight (past it, the publisher waits for answers before it sends more).
const MAX_ROUNDS: usize = 32;
/// Most frame bytes in flight (the same).
const MAX_BYTES: usize = 16 << 20;

/// user -> (server, valid until).
pub(super) type Cache = HashMap<UserId, (Arc<str>, Instant)>;

/// One queued message and its recipients.
pub(super) struct Request {
    pub(super) users: Arc<[UserId]>,
    pub(super) payload: Bytes,
    pub(super) done: PublishDone,
    /// Whether the presence cache may route it (else: the script, always).
    pub(super) cached: bool,
}

/// What a round needs of the publisher: the names the script is given and the script's SHA1
/// on the current connection.
pub(super) struct Keys {
    pub(super) directory: String,
    pub(super) node_prefix: String,
    /// This server (never cached: a user of its own who is not online here goes through
    /// the script).
    pub(super) node: String,
}

/// (request of the round, its recipients in this part).
type Looked = Vec<(usize, Vec<UserId>)>;

/// What one outstanding answer belongs to.
struct Expect {
    round: u64,
    part: Part,
}

enum Part {
    /// A script call for these requests' recipients.
    Script(Looked),
    /// A PUBLISH straight to `node`'s channel, of these requests' parts.
    Direct { node: Arc<str>, parts: Looked },
}

/// One round in flight.
struct Round {
    /// Its requests; empty once they got their outcome.
    batch: Vec<Request>,
    /// Per request: whether some server received it so far.
    reached: Vec<bool>,
    /// Answers still to come.
    outstanding: usize,
    /// Whether an answer of it came (a round cut after that is not sent again).
    answered: bool,
    /// How many times it was sent (1, or 2 after a cut).
    tries: u8,
    /// Its frame bytes (counted against [`MAX_BYTES`]).
    bytes: usize,
    /// When it was built: the cache entries its answers teach are valid from then.
    built: Instant,
}

/// What went wrong with an answer (its round failed; the connection should take no more
/// rounds), or with the connection.
pub(super) enum Fault {
    /// An error reply (NOAUTH after a password change, NOPERM for an ACL user, NOSCRIPT after
    /// a SCRIPT FLUSH) or an answer of another shape: the connection is of no more use.
    Poisoned,
    /// Writing a fallback script call failed: the connection is broken.
    Io(std::io::Error),
}

/// The rounds in flight, in the order sent, and the answers expected, in the order due.
pub(super) struct InFlight {
    rounds: VecDeque<Round>,
    /// The id of `rounds[0]`.
    first: u64,
    expects: VecDeque<Expect>,
    /// Rounds not finished (finished ones may wait in `rounds` behind an unfinished one).
    live: usize,
    bytes: usize,
}

impl InFlight {
    pub(super) fn new() -> InFlight {
        InFlight {
            rounds: VecDeque::new(),
            first: 0,
            expects: VecDeque::new(),
            live: 0,
            bytes: 0,
        }
    }

    /// Whether no answer is outstanding.
    pub(super) fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Whether another round may be sent now (else: wait for answers first).
    pub(super) fn has_room(&self) -> bool {
        self.live < MAX_ROUNDS && self.bytes < MAX_BYTES
    }

    /// Builds a round of `batch` (`tries`: 1, or 2 when sent again after a cut) and writes it
    /// with `write`: the recipients the cache knows go straight to their servers, the others
    /// through the script, in one write. A round that expects no answer (no recipients) is
    /// done at once. `Err`: the write failed; the round stays in flight (see [`Self::cut`]).
    pub(super) fn send(
        &mut self,
        keys: &Keys,
        sha: &str,
        cache: &Cache,
        batch: Vec<Request>,
        tries: u8,
        write: impl FnOnce(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let now = Instant::now();
        let mut looked: Looked = Vec::new();
        // Per server (in first-use order): its payload and (request, recipients) in it.
        let mut direct: Vec<(Arc<str>, Vec<u8>, Looked)> = Vec::new();
        let mut index: HashMap<Arc<str>, usize> = HashMap::new();
        for (i, r) in batch.iter().enumerate() {
            let mut unknown = Vec::new();
            let mut known: Vec<(Arc<str>, UserId)> = Vec::new();
            for &u in r.users.iter() {
                match cache.get(&u) {
                    Some((node, until)) if r.cached && *until > now => {
                        known.push((node.clone(), u))
                    }
                    _ => unknown.push(u),
                }
            }
            if !unknown.is_empty() {
                looked.push((i, unknown));
            }
            known.sort_by(|a, b| a.0.cmp(&b.0));
            for group in known.chunk_by(|a, b| a.0 == b.0) {
                let node = &group[0].0;
                let users: Vec<UserId> = group.iter().map(|(_, u)| *u).collect();
                let at = *index.entry(node.clone()).or_insert_with(|| {
                    direct.push((node.clone(), Vec::new(), Vec::new()));
                    direct.len() - 1
                });
                encode_direct(&mut direct[at].1, &users, &r.payload);
                direct[at].2.push((i, users));
            }
        }
        let id = self.first + self.rounds.len() as u64;
        let before = self.expects.len();
        let mut packed = Vec::new();
        if !looked.is_empty() {
            packed.extend(script_cmd(keys, sha, &batch, &looked).get_packed_command());
            self.expects.push_back(Expect {
                round: id,
                part: Part::Script(looked),
            });
        }
        for (node, payload, parts) in direct {
            let channel = format!("{}{node}", keys.node_prefix);
            packed.extend(
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(&payload[..])
                    .get_packed_command(),
            );
            self.expects.push_back(Expect {
                round: id,
                part: Part::Direct { node, parts },
            });
        }
        let outstanding = self.expects.len() - before;
        if outstanding == 0 {
            for r in batch {
                (r.done)(Ok(false));
            }
            return Ok(());
        }
        let bytes = batch.iter().map(|r| r.payload.len()).sum();
        self.rounds.push_back(Round {
            reached: vec![false; batch.len()],
            batch,
            outstanding,
            answered: false,
            tries,
            bytes,
            built: now,
        });
        self.live += 1;
        self.bytes += bytes;
        write(&packed)
    }

    /// Takes the next answer: marks what it reached, teaches the cache, sends a `PUBLISH`
    /// that reached nobody through the script again (with `write`), and hands out the
    /// outcomes of a round it completes. Returns how many rounds completed well.
    pub(super) fn answer(
        &mut self,
        answer: redis::Value,
        keys: &Keys,
        sha: &str,
        cache: &mut Cache,
        refused: &dyn Fn(String) -> BusError,
        write: impl FnOnce(&[u8]) -> std::io::Result<()>,
    ) -> Result<usize, Fault> {
        let Some(expect) = self.expects.pop_front() else {
            log::warn!("an answer from Redis nobody asked for: {answer:?}");
            return Err(Fault::Poisoned);
        };
        let at = (expect.round - self.first) as usize;
        let round = &mut self.rounds[at];
        round.outstanding -= 1;
        let mut fault = None;
        if round.batch.is_empty() {
            // The round failed already; this answer means nothing any more.
        } else if let redis::Value::ServerError(e) = answer {
            let err = refused(format!("{e:?}"));
            fail(std::mem::take(&mut round.batch), &err);
            fault = Some(Fault::Poisoned);
        } else {
            round.answered = true;
            let taught = match expect.part {
                Part::Script(looked) => learn(
                    keys,
                    cache,
                    round.built,
                    &looked,
                    answer,
                    &mut round.reached,
                ),
                Part::Direct { node, parts } => match answer {
                    redis::Value::Int(n) if n > 0 => {
                        parts.iter().for_each(|(i, _)| round.reached[*i] = true);
                        Ok(())
                    }
                    redis::Value::Int(_) => {
                        // Nobody listens there: that server is gone. Its users go through the
                        // script.
                        cache.retain(|_, (n, _)| *n != node);
                        let cmd = script_cmd(keys, sha, &round.batch, &parts);
                        round.outstanding += 1;
                        self.expects.push_back(Expect {
                            round: expect.round,
                            part: Part::Script(parts),
                        });
                        if let Err(e) = write(&cmd.get_packed_command()) {
                            fault = Some(Fault::Io(e));
                        }
                        Ok(())
                    }
                    other => Err(format!("{other:?}")),
                },
            };
            if let Err(e) = taught {
                fail(
                    std::mem::take(&mut round.batch),
                    &BusError::Unavailable(format!("unexpected answer from Redis: {e}")),
                );
                fault = Some(Fault::Poisoned);
            }
        }
        let mut completed = 0;
        if round.outstanding == 0 {
            let batch = std::mem::take(&mut round.batch);
            let reached = std::mem::take(&mut round.reached);
            let bytes = round.bytes;
            if !batch.is_empty() {
                completed += 1;
                for (r, got) in batch.into_iter().zip(reached) {
                    (r.done)(Ok(got));
                }
            }
            self.live -= 1;
            self.bytes -= bytes;
            while self.rounds.front().is_some_and(|r| r.outstanding == 0) {
                self.rounds.pop_front();
                self.first += 1;
            }
        }
        match fault {
            Some(f) => Err(f),
            None => Ok(completed),
        }
    }

    /// The connection is gone: takes every round in flight out. Returns, in order, the
    /// batches to send again (no answer of theirs came, `closed` says the connection was found
    /// closed, and they were sent once only) and the requests that fail.
    pub(super) fn cut(&mut self, closed: bool) -> (Vec<Vec<Request>>, Vec<Request>) {
        let mut again = Vec::new();
        let mut failed = Vec::new();
        // Ids stay unique across connections.
        self.first += self.rounds.len() as u64;
        for round in self.rounds.drain(..) {
            if round.batch.is_empty() {
                continue;
            }
            if closed && !round.answered && round.tries < 2 {
                again.push(round.batch);
            } else {
                failed.extend(round.batch);
            }
        }
        self.expects.clear();
        self.live = 0;
        self.bytes = 0;
        (again, failed)
    }
}

/// Calls each request's `done` with `e`.
pub(super) fn fail(batch: Vec<Request>, e: &BusError) {
    for r in batch {
        (r.done)(Err(e.clone()));
    }
}

/// The script call for `looked`.
fn script_cmd(keys: &Keys, sha: &str, batch: &[Request], looked: &Looked) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(sha)
        .arg(1)
        .arg(&keys.directory)
        .arg(&keys.node_prefix);
    for (i, users) in looked {
        add_message(&mut cmd, users, &batch[*i].payload);
    }
    cmd
}

/// Reads the script's answer for `looked`: marks the requests it reached, and caches the
/// directory entries it read (a user with none, or on this server, is forgotten).
fn learn(
    keys: &Keys,
    cache: &mut Cache,
    now: Instant,
    looked: &Looked,
    answer: redis::Value,
    reached: &mut [bool],
) -> Result<(), String> {
    let redis::Value::Array(mut parts) = answer else {
        return Err(format!("routing answer {answer:?}"));
    };
    let (Some(redis::Value::Array(found)), Some(redis::Value::Array(got))) =
        (parts.pop(), parts.pop())
    else {
        return Err("routing answer".into());
    };
    let total: usize = looked.iter().map(|(_, u)| u.len()).sum();
    if got.len() != looked.len() || found.len() != total {
        return Err("routing answer of another size".into());
    }
    for ((i, _), g) in looked.iter().zip(got) {
        if matches!(g, redis::Value::Int(n) if n > 0) {
            reached[*i] = true;
        }
    }
    let users = looked.iter().flat_map(|(_, u)| u.iter());
    for (&u, entry) in users.zip(found) {
        let node = match &entry {
            redis::Value::BulkString(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.rsplit_once('/'))
                .map(|(node, _)| node),
            _ => None,
        };
        match node {
            Some(node) if node != keys.node => {
                let node: Arc<str> = match cache.get(&u) {
                    Some((n, _)) if &**n == node => n.clone(),
                    _ => node.into(),
                };
                cache.insert(u, (node, now + CACHE_TTL));
            }
            _ => {
                cache.remove(&u);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every request of a failed round gets the round's error as it is, its message not
    /// wrapped in "message bus unavailable:" a second time.
    #[test]
    fn a_failed_round_reports_its_error_once() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let batch = (0..2)
            .map(|_| {
                let tx = tx.clone();
                Request {
                    users: Arc::from([1]),
                    payload: Bytes::new(),
                    done: Box::new(move |outcome| {
                        let _ = tx.send(outcome.map_err(|e| e.to_string()));
                    }),
                    cached: false,
                }
            })
            .collect();
        fail(batch, &BusError::Unavailable("route: closed".into()));
        let got: Vec<_> = rx.try_iter().collect();
        let want = Err("message bus unavailable: route: closed".to_string());
        assert_eq!(got, [want.clone(), want]);
    }
}
