//! Publishing: the routes a registry's domains get, built whole (pool, policy, hash table,
//! split lanes, access control) and swapped into the route table one domain at a time.

use super::{Effects, Registry};
use crate::metrics::{BackendGauge, RouteHandles};
use crate::model::{DomainRecord, Tag};
use crate::routing::{
    Access, BackendPool, HashTables, Policy, PoolMember, Route, RouteTable, Split,
};
use std::collections::HashMap;
use std::sync::Arc;

impl Registry {
    /// Publishes every domain's route into an empty or stale table.
    pub fn publish_all(&mut self, table: &RouteTable, metrics: &mut RouteHandles) {
        let mut pools = Pools::new(std::mem::take(&mut self.hash_tables));
        for d in self.domains.values() {
            table.publish(self.build_route(d, table, false, &mut pools, metrics));
        }
        self.hash_tables = pools.tables;
        metrics.set_backends(self.backend_gauges());
    }

    /// Publishes what a command changed.
    pub fn publish(&mut self, effects: &Effects, table: &RouteTable, metrics: &mut RouteHandles) {
        for d in &effects.withdraw {
            table.withdraw(d);
            metrics.forget_domain(d.as_str());
        }
        let mut pools = Pools::new(std::mem::take(&mut self.hash_tables));
        for name in &effects.republish {
            if let Some(d) = self.domains.get(name) {
                let fresh = effects.switched.as_ref() == Some(name);
                table.publish(self.build_route(d, table, fresh, &mut pools, metrics));
            }
        }
        self.hash_tables = pools.tables;
        if let Some(d) = &effects.switched {
            metrics.metrics().record_switch(d.as_str());
        }
        if effects.backends_changed {
            metrics.set_backends(self.backend_gauges());
        }
    }

    fn backend_gauges(&self) -> Vec<BackendGauge> {
        self.backends
            .values()
            .map(|b| BackendGauge {
                id: b.id.to_string(),
                tags: b.tags.iter().map(|t| t.to_string()).collect(),
                upstream: Arc::clone(&self.upstreams[&b.id]),
            })
            .collect()
    }

    /// The route of `d`; `fresh` after a routing change (split, switch, undo, rollback), whose
    /// canaries' outcome windows start again from zero.
    fn build_route(
        &self,
        d: &DomainRecord,
        table: &RouteTable,
        fresh: bool,
        pools: &mut Pools,
        metrics: &mut RouteHandles,
    ) -> Arc<Route> {
        let split = d.weights.as_ref().map(|weights| {
            let lanes = weights
                .iter()
                .filter(|(_, w)| **w > 0)
                .map(|(tag, w)| {
                    let lane = self.lane_route(d, tag, None, None, pools, metrics);
                    if d.rollback.is_some() {
                        lane.metrics.watch_outcomes(fresh);
                    }
                    (*w, lane)
                })
                .collect();
            Split::new(lanes, d.sticky)
        });
        let previous = table.get(&d.domain);
        let access = Access::new(&d.access, previous.as_ref().and_then(|r| r.access.as_ref()));
        self.lane_route(d, &d.enabled_backends_tag, split, access, pools, metrics)
    }

    /// The route of `d` on one tag (with `split` for the domain's main route).
    fn lane_route(
        &self,
        d: &DomainRecord,
        tag: &Tag,
        split: Option<Split>,
        access: Option<Access>,
        pools: &mut Pools,
        metrics: &mut RouteHandles,
    ) -> Arc<Route> {
        let policy = Policy::new(d.lb_policy, d.lb_hash_header.as_deref());
        let hashed = policy.hashes();
        let pool = match pools.built.get(&(tag.clone(), hashed)) {
            Some(pool) => Arc::clone(pool),
            None => {
                let pool = Arc::new(self.pool_for(tag, hashed, &mut pools.tables));
                pools.built.insert((tag.clone(), hashed), Arc::clone(&pool));
                pool
            }
        };
        Arc::new(Route {
            domain: d.domain.clone(),
            tag: tag.clone(),
            pool,
            policy,
            http_to_https: d.http_to_https,
            metrics: metrics.route(d.domain.as_str(), tag.as_str()),
            split,
            access,
        })
    }

    /// The pool of `tag`; with `hashed`, with its consistent-hash table (built here, at publish
    /// time, so that no request ever builds one).
    fn pool_for(&self, tag: &Tag, hashed: bool, tables: &mut HashTables) -> BackendPool {
        let pool = BackendPool::new(self.backends.values().filter(|b| b.has_tag(tag)).map(|b| {
            PoolMember {
                backend: Arc::clone(&self.upstreams[&b.id]),
                weight: b.weight,
                max_connections: b.max_connections,
            }
        }));
        if hashed {
            pool.with_table_from(tables)
        } else {
            pool
        }
    }
}

/// Pools built during one publish, by tag and whether they carry a hash table: routes on one
/// tag share a pool (and its round-robin cursor), and only hashing routes pay for the table,
/// which pools of the same members share across publishes too.
struct Pools {
    built: HashMap<(Tag, bool), Arc<BackendPool>>,
    tables: HashTables,
}

impl Pools {
    fn new(tables: HashTables) -> Self {
        Self {
            built: HashMap::new(),
            tables,
        }
    }
}
