//! `tags`: what tags cost RedisStore on its own redis-server, at
//! concurrency 1 (one call at a time: round trips dominate). `set` with 0, 1
//! and 5 tags (unbounded, and under an LruPolicy), `get` hits on tagged and
//! untagged entries, and `invalidate_tags` of 1,000 entries among 10,000.
//! Rounds interleaved; median us per call over the rounds.

use std::time::Instant;

use pepperpy_caching::stores::RedisStore;
use pepperpy_caching::{CacheStore, LruPolicy, SetOptions};

use super::{Error, Server};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn main(args: &[String]) -> Result<(), Error> {
    let quick = args.iter().any(|a| a == "--quick");
    let (rounds, ops) = if quick { (3, 500) } else { (9, 4_000) };
    let server = Server::start()?;
    let url = server.url();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let plain: RedisStore<String> = RedisStore::builder(&url).prefix("t0:").build().await?;
        let lru: RedisStore<String> =
            RedisStore::builder(&url).prefix("t1:").policy(LruPolicy::new(1_000_000)?).build().await?;
        let value = "x".repeat(32);
        let tag_sets: [Vec<String>; 3] =
            [vec![], vec!["user:1".into()], (0..5).map(|i| format!("group:{i}")).collect::<Vec<String>>()];
        let names = [
            "set, 0 tags",
            "set, 1 tag",
            "set, 5 tags",
            "set (LRU), 0 tags",
            "set (LRU), 5 tags",
            "get hit, untagged",
            "get hit, 5 tags",
        ];
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
        let mut invalidations = Vec::new();
        for round in 0..rounds {
            let cases: [(&RedisStore<String>, &Vec<String>); 5] = [
                (&plain, &tag_sets[0]),
                (&plain, &tag_sets[1]),
                (&plain, &tag_sets[2]),
                (&lru, &tag_sets[0]),
                (&lru, &tag_sets[2]),
            ];
            for (case, (store, tags)) in cases.into_iter().enumerate() {
                let t = Instant::now();
                for i in 0..ops {
                    let options = SetOptions::new().tags(tags.iter().cloned());
                    store.set(&format!("s{case}:{}", i % 1000), value.clone(), options).await?;
                }
                times[case].push(t.elapsed().as_nanos() as f64 / ops as f64 / 1000.0);
            }
            for (case, key) in [(5, "s0:"), (6, "s2:")] {
                let t = Instant::now();
                for i in 0..ops {
                    std::hint::black_box(plain.get(&format!("{key}{}", i % 1000)).await?);
                }
                times[case].push(t.elapsed().as_nanos() as f64 / ops as f64 / 1000.0);
            }
            let prefix = format!("inv{round}:");
            let store: RedisStore<String> = RedisStore::builder(&url).prefix(prefix).build().await?;
            let entries: Vec<String> = (0..10_000).map(|i| format!("k{i}")).collect();
            for chunk in entries.chunks(1000).enumerate() {
                let (n, keys) = chunk;
                let tag = if n == 0 { "hot" } else { "cold" };
                let batch = keys.iter().map(|k| (k.as_str(), value.clone())).collect();
                store.set_many(batch, SetOptions::new().tags([tag])).await?;
            }
            let t = Instant::now();
            let removed = store.invalidate_tags(&["hot"]).await?;
            invalidations.push(t.elapsed().as_nanos() as f64 / 1000.0);
            assert_eq!(removed, 1000);
            store.clear().await?;
            store.invalidate_tags(&["cold"]).await?;
        }
        println!("RedisStore<String> on {url}, concurrency 1, {ops} calls a case, median of {rounds} interleaved rounds");
        let (set0, get0) = (median(times[0].clone()), median(times[5].clone()));
        let set_lru0 = median(times[3].clone());
        for (i, name) in names.iter().enumerate() {
            let m = median(times[i].clone());
            let against = match i {
                0..=2 => set0,
                3 | 4 => set_lru0,
                _ => get0,
            };
            println!("  {name:<20} {m:>8.1} us/call   {:.2}x", m / against);
        }
        println!("  invalidate_tags of 1000 entries among 10000: {:.0} us", median(invalidations));
        Ok::<_, Error>(())
    })?;
    drop(server);
    Ok(())
}
