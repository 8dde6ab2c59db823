//! Smoke test of chatbench's `--layout` and Redis figures on a real two-server cluster (a
//! private Redis with a password, MySQL per `util`): pairs and a group measured local and
//! across in one A/B run, about a second each, with few users. The checks are counts: nothing
//! lost, both layouts reported with their Redis figures, messages that cross servers go
//! through Redis (PUBLISH) and messages that stay on one server publish less; never timings.

mod util;

use chatbench::compare::{run_compare, Comparison, Kind};
use chatbench::{Layout, Settings};
use std::time::Duration;
use util::cluster::TestCluster;
use util::mysql_db::TestDb;
use util::private_redis::PrivateRedis;

const PASSWORD: &str = "bench-redis-pw";

/// Both layouts: local as A, across as B, one round each; checks what every report must have.
fn local_vs_across(kind: Kind, cluster: &TestCluster, redis: &PrivateRedis) -> Comparison {
    let across = Settings {
        targets: cluster.servers.iter().map(|s| s.addr).collect(),
        users: 6,
        window: 4,
        duration: Duration::from_millis(1000),
        grace: Duration::from_secs(5),
        timeout: Duration::from_secs(60),
        threads: 2,
        concurrency: 4,
        senders: 1,
        server_pids: cluster.servers.iter().map(|s| s.pid()).collect(),
        redis: Some(format!("redis://:{PASSWORD}@127.0.0.1:{}", redis.port)),
        redis_pids: redis.pid().into_iter().collect(),
        ..Settings::default()
    };
    let local = Settings {
        layout: Layout::Local,
        ..across.clone()
    };
    let cmp = run_compare(kind, &local, &across, 1).unwrap();
    for (r, layout) in [(&cmp.a[0], "local"), (&cmp.b[0], "across")] {
        let t = r.table();
        assert_eq!(r.layout.as_deref(), Some(layout), "{t}");
        assert!(r.delivered > 0 && r.delivered == r.sent, "{t}");
        assert_eq!((r.lost, r.errors, r.disconnects), (0, 0, 0), "{t}");
        assert!(r.redis_cmds_per_msg.is_some(), "{t}");
        assert!(r.redis_cpu_us_per_msg.is_some(), "{t}");
        assert!(r.redis_publish_per_msg.is_some(), "{t}");
        let json = serde_json::to_value(r).unwrap();
        for key in [
            "redis_cmds_per_msg",
            "redis_publish_per_msg",
            "redis_cpu_us_per_msg",
        ] {
            assert!(json[key].is_number(), "{key} in {json}");
        }
        assert_eq!(json["layout"], layout);
    }
    let (local, across) = (&cmp.a[0], &cmp.b[0]);
    let publish = |r: &chatbench::report::Report| r.redis_publish_per_msg.unwrap();
    assert!(publish(across) > 0.0, "{}", across.table());
    assert!(
        publish(local) < publish(across),
        "local {} across {}",
        local.table(),
        across.table()
    );
    assert!(cmp.ratios["msgs_per_sec"].ratio.is_some());
    assert!(cmp.ratios.contains_key("redis_cmds_per_msg"));
    assert!(cmp.table().contains("(local)") && cmp.table().contains("(across)"));
    cmp
}

#[test]
fn pairs_and_group_local_and_across_with_redis_figures() {
    let Some(redis) = PrivateRedis::start_with(&["--requirepass", PASSWORD]) else {
        return;
    };
    let Some(db) = TestDb::create("bench_layout") else {
        return;
    };
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{}", redis.port);
    let cluster = TestCluster::start_on("bench_layout", 2, url, db);
    let pairs = local_vs_across(Kind::Pairs, &cluster, &redis);
    assert_eq!(pairs.a[0].users, 6);
    let group = local_vs_across(Kind::Group, &cluster, &redis);
    assert_eq!(
        group.b[0].sent % 5,
        0,
        "each message goes to the 5 other members"
    );
}
