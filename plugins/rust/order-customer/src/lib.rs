//! Orders joined with their customers through a foreign key (`pipelines/orders-customers`):
//! each order, keyed by its id, names its customer in its value; the customer table is keyed
//! by customer id.

use serde::{Deserialize, Serialize};
use wasp::Json;

/// An order, keyed by its id.
#[derive(Deserialize)]
struct Order {
    customer: String,
    item: String,
    amount: f64,
}

/// Only the field the foreign key comes from.
#[derive(Deserialize)]
struct CustomerRef {
    customer: String,
}

/// A customer, keyed by its id.
#[derive(Serialize, Deserialize)]
struct Customer {
    name: String,
    tier: String,
}

/// An order with the customer it names.
#[derive(Serialize)]
struct OrderWithCustomer<'a> {
    order: &'a str,
    item: String,
    amount: f64,
    customer_id: String,
    customer: Option<Customer>,
}

/// The customer an order refers to: the key of its row in the customer table. An order
/// that is not JSON or names no customer fails on its own.
#[wasp::foreign_key]
fn customer_of(Json(order): Json<CustomerRef>) -> String {
    order.customer
}

/// The order with its customer, or with `"customer": null` when the table has no row for
/// the customer it names (a left join's order whose customer does not exist yet, or no
/// longer does).
#[wasp::value_joiner]
fn with_customer<'a>(
    order_id: &'a str,
    Json(order): Json<Order>,
    customer: Option<Json<Customer>>,
) -> Json<OrderWithCustomer<'a>> {
    Json(OrderWithCustomer {
        order: order_id,
        item: order.item,
        amount: order.amount,
        customer_id: order.customer,
        customer: customer.map(|Json(c)| c),
    })
}
