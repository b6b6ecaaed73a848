//! Restaurant profiles: storing one, and reading one (or the default of a restaurant
//! without a profile).

use super::{Flow, Result};
use crate::{
    domain::{restaurant::Restaurant, values::RestaurantId},
    store,
};

impl Flow {
    /// Creates or replaces a restaurant's profile; emails queued before keep the old one.
    #[tracing::instrument(skip_all, fields(restaurant.id = %restaurant.id.as_str()))]
    pub async fn put_restaurant(&self, restaurant: Restaurant) -> Result<Restaurant> {
        let client = self.db.client().await?;
        store::restaurants::put(&client, &restaurant).await
    }

    /// The restaurant's profile, or its id as name and UTC when it has none.
    #[tracing::instrument(skip_all, fields(restaurant.id = %id.as_str()))]
    pub async fn get_restaurant(&self, id: RestaurantId) -> Result<Restaurant> {
        let client = self.db.client().await?;
        Ok(store::restaurants::get(&client, &id).await?.unwrap_or_else(|| Restaurant::default_for(id)))
    }
}
