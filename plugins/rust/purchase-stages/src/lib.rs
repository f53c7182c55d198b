//! The functions of KSML's modular pipeline (`pipelines/ksml-modular`), one per stage, for a
//! shop's purchase events: ingestion parses, validates and normalizes raw events
//! (`is_valid_purchase`, `normalize_data`), enrichment joins each purchase with its product
//! from the catalog (`key_from_field` picks the SKU, `enrich_with_reference_data` joins), and
//! analysis totals the sales of each category (`key_from_field` picks the category,
//! `initialize_analysis` and `perform_analysis` fold).

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wasp::Json;

/// A raw event as the shop's front ends send it: the price is decimal text, the SKU as typed.
#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    sku: String,
    #[serde(default)]
    qty: i64,
    #[serde(default)]
    price: String,
}

/// A valid purchase, normalized: the SKU trimmed and upper-cased, money in cents.
#[derive(Serialize, Deserialize)]
struct Purchase {
    sku: String,
    quantity: u32,
    unit_price_cents: u64,
    amount_cents: u64,
}

/// A product, as the catalog holds it (keyed by SKU).
#[derive(Deserialize)]
struct Product {
    name: String,
    category: String,
}

/// A purchase with its product's name and category.
#[derive(Serialize, Deserialize)]
struct EnrichedPurchase {
    sku: String,
    name: String,
    category: String,
    quantity: u32,
    amount_cents: u64,
}

/// The sales of one category so far.
#[derive(Serialize, Deserialize, Default)]
struct CategorySales {
    orders: u64,
    units: u64,
    revenue_cents: u64,
    /// The names of the products sold, in the order of their first sale.
    products: Vec<String>,
}

/// The purchase a raw event describes, or why it describes none.
fn parse(raw: &str) -> Result<Purchase, String> {
    let event: RawEvent = serde_json::from_str(raw).map_err(|e| format!("not a valid event: {e}"))?;
    if event.kind != "purchase" {
        return Err(format!("a `{}` event, not a purchase", event.kind));
    }
    let sku = event.sku.trim().to_uppercase();
    if sku.is_empty() {
        return Err("no SKU".to_owned());
    }
    let quantity = u32::try_from(event.qty)
        .ok()
        .filter(|&q| q > 0)
        .ok_or_else(|| format!("the quantity {} is not positive", event.qty))?;
    let unit_price_cents = cents(&event.price)
        .filter(|&c| c > 0)
        .ok_or_else(|| format!("the price `{}` is not a positive amount", event.price))?;
    let amount_cents = unit_price_cents
        .checked_mul(u64::from(quantity))
        .ok_or_else(|| format!("{quantity} at {unit_price_cents} cents overflows"))?;
    Ok(Purchase { sku, quantity, unit_price_cents, amount_cents })
}

/// Decimal text with at most two decimals (`129.00`, `89.9`, `12`) in cents.
fn cents(text: &str) -> Option<u64> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) if (1..=2).contains(&fraction.len()) => (whole, fraction),
        Some(_) => return None,
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) {
        return None;
    }
    let fraction: u64 = format!("{fraction:0<2}").parse().ok()?;
    whole.parse::<u64>().ok()?.checked_mul(100)?.checked_add(fraction)
}

/// Ingestion: keeps the raw events that are valid purchases. The others (other event types,
/// text that is not a JSON event, a quantity or price that is not positive) are dropped, with
/// the reason logged at debug level.
#[wasp::filter]
fn is_valid_purchase(raw: &str) -> bool {
    match parse(raw) {
        Ok(_) => true,
        Err(reason) => {
            wasp::log::debug(&format!("dropping a raw event: {reason}"));
            false
        }
    }
}

/// Ingestion: the purchase a valid raw event describes, normalized. An invalid event (one the
/// filter before would have dropped) fails.
#[wasp::map_values]
fn normalize_data(raw: &str) -> Result<Json<Purchase>, String> {
    parse(raw).map(Json)
}

/// The field `config.field` names, for one declaration of this plugin per field.
fn configured_field() -> Result<&'static str, String> {
    static FIELD: OnceLock<Option<String>> = OnceLock::new();
    FIELD.get_or_init(|| wasp::config::get("field")).as_deref().ok_or_else(|| "config.field is not set".to_owned())
}

/// Enrichment and analysis: the value's string field that `config.field` names, as the key
/// (the SKU to look the catalog up by, the category to group by); a value without it has
/// none, and the join drops it.
#[wasp::select_key]
fn key_from_field(Json(value): Json<Map<String, Value>>) -> Result<Option<String>, String> {
    let field = configured_field()?;
    Ok(value.get(field).and_then(Value::as_str).map(str::to_owned))
}

/// Enrichment: the purchase with its product's name and category.
#[wasp::value_joiner]
fn enrich_with_reference_data(Json(purchase): Json<Purchase>, Json(product): Json<Product>) -> Json<EnrichedPurchase> {
    Json(EnrichedPurchase {
        sku: purchase.sku,
        name: product.name,
        category: product.category,
        quantity: purchase.quantity,
        amount_cents: purchase.amount_cents,
    })
}

/// Analysis: every category starts with no sales.
fn initialize_analysis() -> Json<CategorySales> {
    Json(CategorySales::default())
}

/// Analysis: adds one enriched purchase to its category's sales.
#[wasp::aggregate(init = initialize_analysis)]
fn perform_analysis(
    Json(purchase): Json<EnrichedPurchase>,
    Json(mut sales): Json<CategorySales>,
) -> Result<Json<CategorySales>, String> {
    sales.orders += 1;
    sales.units += u64::from(purchase.quantity);
    sales.revenue_cents = sales
        .revenue_cents
        .checked_add(purchase.amount_cents)
        .ok_or_else(|| format!("the revenue of `{}` overflows", purchase.category))?;
    if !sales.products.contains(&purchase.name) {
        sales.products.push(purchase.name);
    }
    Ok(Json(sales))
}
