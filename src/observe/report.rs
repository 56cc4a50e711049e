//! `plan --json` and `plan --detailed-exitcode`: one platform's plan as data
//! for scripts, and what counts as a change (Terraform's convention: exit 2
//! when changes are planned). Env values never appear: actions are described
//! by kind, connector, workload, image and reason only.

use serde_json::{Value, json};

use crate::reconcile::{Action, ActionKind, Desired, Level, Plan};

/// Whether an action changes the world: a workload, or the status a platform
/// records. Health, log snapshots and notices are routine, not changes.
pub fn is_change(kind: ActionKind) -> bool {
    kind.changes_workload() || kind == ActionKind::Report
}

/// The changes in `plan`.
pub fn changes(plan: &Plan) -> usize {
    plan.actions.iter().filter(|a| is_change(a.kind())).count()
}

fn level(l: Level) -> &'static str {
    match l {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
    }
}

fn action(a: &Action, description: String) -> Value {
    let image = match a {
        Action::Deploy { spec, .. } | Action::Refresh { spec, .. } => Some(spec.image.as_str()),
        _ => None,
    };
    json!({
        "kind": a.kind().as_str(),
        "connector": a.connector_id(),
        "workload": a.workload(),
        "image": image,
        "reason": a.reason(),
        "change": is_change(a.kind()),
        "description": description,
    })
}

/// One platform's plan; `describe` is the text line of an action.
pub fn plan_json(
    platform: &str,
    plan: &Plan,
    desired: &[Desired],
    describe: impl Fn(&Action) -> String,
) -> Value {
    let connectors: Vec<Value> = desired
        .iter()
        .map(|d| {
            let c = &d.connector;
            json!({
                "id": c.id,
                "name": c.name,
                "deployable": d.env.is_ok(),
                "problem": d.env.as_ref().err(),
            })
        })
        .collect();
    let notes: Vec<Value> = plan
        .notes
        .iter()
        .map(|n| json!({"level": level(n.level), "connector": n.connector, "text": n.text}))
        .collect();
    json!({
        "platform": platform,
        "ok": true,
        "changes": changes(plan),
        "actions": plan.actions.iter().map(|a| action(a, describe(a))).collect::<Vec<_>>(),
        "connectors": connectors,
        "notes": notes,
    })
}
