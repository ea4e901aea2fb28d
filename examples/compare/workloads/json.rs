//! (a) json: many small short-lived objects.

use super::{sentence, Extra, Rng, Scale, WORDS};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use support::checksum::fnv;

#[derive(Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: String,
    email: String,
    status: String,
    items: Vec<Item>,
    tags: Vec<String>,
    note: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Item {
    sku: String,
    name: String,
    qty: u32,
    price_cents: u64,
    attrs: BTreeMap<String, String>,
}

fn make_orders(rng: &mut Rng, iter: u64) -> Vec<Order> {
    const STATUS: [&str; 4] = ["new", "paid", "shipped", "returned"];
    (0..rng.range(1, 8))
        .map(|k| {
            let customer = sentence(rng, 2, 2);
            let email = format!("{}.{}@example.com", customer.replace(' ', "."), iter % 1000);
            let items = (0..rng.range(1, 6))
                .map(|_| {
                    let mut attrs = BTreeMap::new();
                    for _ in 0..rng.below(4) {
                        attrs.insert(
                            WORDS[rng.below(WORDS.len())].to_owned(),
                            sentence(rng, 1, 3),
                        );
                    }
                    Item {
                        sku: format!("SKU-{:06}", rng.below(1_000_000)),
                        name: sentence(rng, 1, 5),
                        qty: rng.range(1, 20) as u32,
                        price_cents: rng.range(99, 99_999) as u64,
                        attrs,
                    }
                })
                .collect();
            Order {
                id: iter * 16 + k as u64,
                customer,
                email,
                status: STATUS[rng.below(4)].to_owned(),
                items,
                tags: (0..rng.below(5)).map(|_| sentence(rng, 1, 1)).collect(),
                note: rng.pct(30).then(|| sentence(rng, 3, 12)),
            }
        })
        .collect()
}

/// An order-independent digest of a JSON value.
fn walk(v: &Value) -> u64 {
    match v {
        Value::Null => 1,
        Value::Bool(b) => 2 + *b as u64,
        Value::Number(n) => n.as_u64().unwrap_or(3),
        Value::String(s) => fnv(s.as_bytes()),
        Value::Array(a) => a.iter().fold(5, |acc, x| acc.wrapping_add(walk(x))),
        Value::Object(m) => m.iter().fold(7, |acc, (k, x)| {
            acc.wrapping_add(fnv(k.as_bytes()) ^ walk(x))
        }),
    }
}

fn json_iteration(iter: u64) -> u64 {
    let mut rng = Rng::new_spread(iter);
    let orders = make_orders(&mut rng, iter);
    // Serialize, parse untyped, walk, build a response, serialize it.
    let text = if iter.is_multiple_of(8) {
        serde_json::to_string_pretty(&orders)
    } else {
        serde_json::to_string(&orders)
    }
    .expect("serialize");
    drop(orders);
    let doc: Value = serde_json::from_str(&text).expect("parse");
    let mut sum = walk(&doc).wrapping_add(text.len() as u64);
    let mut index = serde_json::Map::new();
    let mut customers = Vec::new();
    let mut total = 0u64;
    for order in doc.as_array().expect("array") {
        customers.push(order["customer"].clone());
        for item in order["items"].as_array().expect("items") {
            let qty = item["qty"].as_u64().expect("qty");
            total += qty * item["price_cents"].as_u64().expect("price");
            index.insert(
                item["sku"].as_str().expect("sku").to_owned(),
                json!({ "qty": qty, "order": order["id"], "name": item["name"] }),
            );
        }
    }
    let response = json!({
        "ok": true,
        "orders": customers.len(),
        "customers": customers,
        "total_cents": total,
        "index": index,
    });
    let out = serde_json::to_vec(&response).expect("serialize");
    sum = sum.wrapping_add(fnv(&out));
    // Parse typed, as a handler with a request struct does.
    let typed: Vec<Order> = serde_json::from_str(&text).expect("parse typed");
    for o in &typed {
        sum = sum.wrapping_add(o.id ^ o.items.iter().map(|i| i.price_cents).sum::<u64>());
        sum = sum.wrapping_add(o.note.as_deref().map_or(0, |n| n.len() as u64));
    }
    sum
}

/// The workload; returns its checksum.
pub fn run(scale: Scale, _: &mut Extra) -> u64 {
    const THREADS: u64 = 2;
    let iters = scale.pick(40_000, 2_000) as u64;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    (t..iters)
                        .step_by(THREADS as usize)
                        .fold(0u64, |acc, i| acc.wrapping_add(json_iteration(i)))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("json thread"))
            .fold(0, u64::wrapping_add)
    })
}
