//! The housekeeping thread of a server.

use crate::service::ChatService;
use std::sync::Arc;

/// The housekeeping thread: every second, retries what failed during an outage; on a shared
/// database, every few seconds also keeps this server's node lock and sets offline the users
/// of servers that died without saying so (proven gone: see `ChatService::reap_dead_nodes`),
/// so friends lists stop showing them online; every minute prunes the message log
/// (`--retention-days`) and expired client message ids; every second closes heartbeating
/// connections that went silent (`--heartbeat-timeout`) and kicked connections that stayed
/// open.
pub(super) struct Housekeeper {
    stop: crossbeam_channel::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Housekeeper {
    const TICK: std::time::Duration = std::time::Duration::from_secs(1);
    const REAP_EVERY: u32 = 5;
    const PRUNE_EVERY: u32 = 60;

    pub(super) fn start(
        service: Arc<ChatService>,
        shared_db: bool,
        retention_days: u32,
        heartbeat_timeout: std::time::Duration,
    ) -> std::io::Result<Housekeeper> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("housekeeper".into())
            .spawn(move || {
                let mut tick = 0u32;
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(Self::TICK)
                {
                    service.retry_pending();
                    service.sweep_heartbeats(heartbeat_timeout);
                    service.sweep_kicked();
                    tick = tick.wrapping_add(1);
                    if shared_db && tick % Self::REAP_EVERY == 0 {
                        service.keep_node_lock();
                        service.reap_dead_nodes();
                    }
                    if tick % Self::PRUNE_EVERY == 1 {
                        service.prune_log(retention_days);
                    }
                }
            })?;
        Ok(Housekeeper { stop, thread })
    }

    pub(super) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}
