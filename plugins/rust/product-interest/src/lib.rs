//! Turns a product view into interest records keyed by product: one for the product itself,
//! and one per product id named in the query string's `also` list (`/products/42?also=7,9`).

use serde::{Deserialize, Serialize};
use wasp::Json;

#[derive(Deserialize)]
struct View {
    user: String,
    path: String,
}

#[derive(Serialize)]
struct Interest {
    user: String,
    direct: bool,
}

#[wasp::flat_map]
fn interests(_user: Option<&str>, Json(view): Json<View>) -> Result<Vec<(String, Json<Interest>)>, String> {
    let (path, query) = view.path.split_once('?').unwrap_or((&view.path, ""));
    let product = path.strip_prefix("/products/").ok_or_else(|| format!("not a product page: {}", view.path))?;
    let mut out = vec![(product.to_owned(), Json(Interest { user: view.user.clone(), direct: true }))];
    for pair in query.split('&') {
        if let Some(list) = pair.strip_prefix("also=") {
            for id in list.split(',').filter(|id| !id.is_empty()) {
                out.push((id.to_owned(), Json(Interest { user: view.user.clone(), direct: false })));
            }
        }
    }
    Ok(out)
}
