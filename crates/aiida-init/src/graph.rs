//! The dependency graph: bundles flattened, dependencies checked, cycles found, an order chosen.
//!
//! [`plan`] turns a [`ServiceTree`] into a [`Plan`] of atomic services (oneshots and longruns)
//! with their direct dependencies (bundles replaced by their members), their dependents (for the
//! reverse order at shutdown), a topological order and the set that `top` brings up. It fails,
//! before anything starts, on a dependency or bundle member that does not exist and on a cycle,
//! naming the directory and the file.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};

use super::model::{Kind, ServiceTree};

#[derive(Debug)]
pub struct Plan {
    /// Atomic services in a dependency-respecting order (dependencies first).
    pub order: Vec<String>,
    /// Direct atomic dependencies of each atomic service.
    pub dependencies: BTreeMap<String, BTreeSet<String>>,
    /// What must be down before each atomic service stops: its direct atomic dependents, and
    /// the services that name it (or a bundle holding it) in their `stops-before.d/`.
    pub dependents: BTreeMap<String, BTreeSet<String>>,
    /// Each bundle's atomic members (nested bundles flattened).
    pub bundles: BTreeMap<String, BTreeSet<String>>,
    /// Atomic services to bring up: `top`'s members and everything they depend on.
    pub wanted: BTreeSet<String>,
}

fn flatten(
    tree: &ServiceTree,
    name: &str,
    stack: &mut Vec<String>,
    memo: &mut BTreeMap<String, BTreeSet<String>>,
) -> Result<BTreeSet<String>> {
    if let Some(m) = memo.get(name) {
        return Ok(m.clone());
    }
    let svc = &tree.services[name];
    let Kind::Bundle { contents } = &svc.kind else {
        return Ok(BTreeSet::from([name.to_string()]));
    };
    if stack.iter().any(|s| s == name) {
        let mut path = stack.clone();
        path.push(name.into());
        bail!(
            "{}/contents.d: bundle cycle: {}",
            svc.dir.display(),
            path.join(" -> ")
        );
    }
    stack.push(name.into());
    let mut out = BTreeSet::new();
    for member in contents {
        if !tree.services.contains_key(member) {
            bail!(
                "{}/contents.d/{member}: no service or bundle named `{member}`",
                svc.dir.display()
            );
        }
        out.extend(flatten(tree, member, stack, memo)?);
    }
    stack.pop();
    memo.insert(name.into(), out.clone());
    Ok(out)
}

/// Validate the tree and compute the plan.
pub fn plan(tree: &ServiceTree) -> Result<Plan> {
    let mut bundles = BTreeMap::new();
    let mut memo = BTreeMap::new();
    for (name, svc) in &tree.services {
        if matches!(svc.kind, Kind::Bundle { .. }) {
            bundles.insert(
                name.clone(),
                flatten(tree, name, &mut Vec::new(), &mut memo)?,
            );
        }
    }
    let (dependencies, mut dependents) = atomic_dependencies(tree, &bundles)?;
    let order = topological_order(tree, &dependencies)?;
    add_stop_orders(tree, &bundles, &mut dependents)?;
    let mut wanted = BTreeSet::new();
    let mut todo: Vec<String> = bundles
        .get("top")
        .map(|t| t.iter().cloned().collect())
        .unwrap_or_default();
    while let Some(n) = todo.pop() {
        if wanted.insert(n.clone()) {
            todo.extend(dependencies[&n].iter().cloned());
        }
    }
    Ok(Plan {
        order,
        dependencies,
        dependents,
        bundles,
        wanted,
    })
}

type Edges = BTreeMap<String, BTreeSet<String>>;

/// Each atomic service's direct atomic dependencies (bundles replaced by their members), and
/// its dependents.
fn atomic_dependencies(
    tree: &ServiceTree,
    bundles: &BTreeMap<String, BTreeSet<String>>,
) -> Result<(Edges, Edges)> {
    let mut dependencies: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut dependents: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, svc) in &tree.services {
        if matches!(svc.kind, Kind::Bundle { .. }) {
            continue;
        }
        let mut direct = BTreeSet::new();
        for dep in &svc.dependencies {
            let Some(target) = tree.services.get(dep) else {
                bail!(
                    "{}/dependencies.d/{dep}: `{name}` depends on `{dep}`, which is not defined",
                    svc.dir.display()
                );
            };
            match &target.kind {
                Kind::Bundle { .. } => direct.extend(bundles[dep].iter().cloned()),
                _ => {
                    direct.insert(dep.clone());
                }
            }
        }
        if direct.contains(name) {
            bail!(
                "{}/dependencies.d: `{name}` depends on itself (directly or through a bundle)",
                svc.dir.display()
            );
        }
        dependents.entry(name.clone()).or_default();
        for d in &direct {
            dependents
                .entry(d.clone())
                .or_default()
                .insert(name.clone());
        }
        dependencies.insert(name.clone(), direct);
    }

    Ok((dependencies, dependents))
}

/// Add each `stops-before.d/` entry to `stop_after` (what must be down before a service stops);
/// an undefined name, or an order that would make the shutdown wait for itself, is an error.
fn add_stop_orders(
    tree: &ServiceTree,
    bundles: &BTreeMap<String, BTreeSet<String>>,
    stop_after: &mut Edges,
) -> Result<()> {
    for (name, svc) in &tree.services {
        for later in &svc.stops_before {
            let Some(target) = tree.services.get(later) else {
                bail!(
                    "{}/stops-before.d/{later}: `{name}` stops before `{later}`, which is not defined",
                    svc.dir.display()
                );
            };
            let targets = match target.kind {
                Kind::Bundle { .. } => bundles[later].clone(),
                _ => BTreeSet::from([later.clone()]),
            };
            for t in targets {
                stop_after.entry(t).or_default().insert(name.clone());
            }
        }
    }
    // A service waits at shutdown for everything in its `stop_after`: a cycle there would never
    // stop.
    if let Err(cycle) = depth_first(stop_after) {
        bail!(
            "stops-before.d: the shutdown order has a cycle (each stops only once the next is down): {}",
            cycle.join(" -> ")
        );
    }
    Ok(())
}

/// A dependency-respecting order (dependencies first); a cycle is an error naming it.
fn topological_order(tree: &ServiceTree, dependencies: &Edges) -> Result<Vec<String>> {
    depth_first(dependencies).or_else(|cycle| {
        let (n, last) = (&cycle[cycle.len() - 1], &cycle[cycle.len() - 2]);
        bail!(
            "{}/dependencies.d/{n}: dependency cycle: {}",
            tree.services[last].dir.display(),
            cycle.join(" -> ")
        )
    })
}

/// Every node of `edges` after those it points to (depth first, in key order), or the first
/// cycle found, as the path that closes it (`a -> b -> a`).
fn depth_first(edges: &Edges) -> std::result::Result<Vec<String>, Vec<String>> {
    fn visit<'a>(
        n: &'a str,
        edges: &'a Edges,
        state: &mut BTreeMap<&'a str, u8>, // 1 visiting, 2 done
        path: &mut Vec<&'a str>,
        order: &mut Vec<String>,
    ) -> std::result::Result<(), Vec<String>> {
        match state.get(n) {
            Some(2) => return Ok(()),
            Some(1) => {
                let start = path.iter().position(|p| *p == n).unwrap_or(0);
                let mut cycle: Vec<String> =
                    path[start..].iter().map(ToString::to_string).collect();
                cycle.push(n.to_string());
                return Err(cycle);
            }
            _ => {}
        }
        state.insert(n, 1);
        path.push(n);
        for d in edges.get(n).into_iter().flatten() {
            visit(d, edges, state, path, order)?;
        }
        path.pop();
        state.insert(n, 2);
        order.push(n.to_string());
        Ok(())
    }
    let mut order = Vec::new();
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        visit(n, edges, &mut state, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}
