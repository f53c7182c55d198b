//! Orders and their payments, joined within a time window (`pipelines/orders-payments`): an
//! order with the payment made for it, or, once its window has closed without one, unpaid.

use serde::{Deserialize, Serialize};
use wasp::Json;

/// An order, keyed by its id.
#[derive(Deserialize)]
struct Order {
    customer: String,
    amount: f64,
}

/// A payment, keyed by the id of the order it pays.
#[derive(Serialize, Deserialize)]
struct Payment {
    method: String,
    amount: f64,
}

/// What became of an order.
#[derive(Serialize)]
struct Settlement<'a> {
    order: &'a str,
    customer: String,
    amount: f64,
    paid: bool,
    payment: Option<Payment>,
}

/// The order with its payment (`"paid": true`), or without one (`"paid": false,
/// "payment": null`): a left join's order that no payment matched within the window.
#[wasp::value_joiner]
fn settle<'a>(order_id: &'a str, Json(order): Json<Order>, payment: Option<Json<Payment>>) -> Json<Settlement<'a>> {
    let payment = payment.map(|Json(p)| p);
    Json(Settlement {
        order: order_id,
        customer: order.customer,
        amount: order.amount,
        paid: payment.is_some(),
        payment,
    })
}
