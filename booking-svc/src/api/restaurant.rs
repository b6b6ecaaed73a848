//! Restaurant profiles at the edge: a `Restaurant` message into the domain's profile
//! (INVALID_ARGUMENT naming each wrong field, e.g. `restaurant.time_zone`), and back.

use crate::{
    domain::{
        guest::Phone,
        restaurant::{Address, Restaurant, RestaurantName, TimeZoneName},
        values::RestaurantId,
    },
    error::Error,
};
use platform::{proto::booking::v1 as pb, status::Violations};
use tonic::Status;

/// Parses the profile of a PutRestaurant request, naming every wrong field.
pub(super) fn parse_put_restaurant(r: pb::PutRestaurantRequest) -> Result<Restaurant, Status> {
    let mut v = Violations::new();
    let Some(r) = r.restaurant else {
        v.add("restaurant", "required");
        return Err(Error::Invalid(v).into());
    };
    let id = v.check("restaurant.id", RestaurantId::parse(&r.id));
    let name = v.check("restaurant.name", RestaurantName::parse(&r.name));
    let time_zone = v.check("restaurant.time_zone", TimeZoneName::parse(&r.time_zone));
    let address = v.check("restaurant.address", Address::parse(&r.address));
    let phone = v.check("restaurant.phone", Phone::parse(&r.phone));
    match (id, name, time_zone, address, phone) {
        (Some(id), Some(name), Some(time_zone), Some(address), Some(phone)) if v.is_empty() => {
            Ok(Restaurant { id, name, time_zone, address, phone })
        }
        _ => Err(Error::Invalid(v).into()),
    }
}

/// Parses the id of a GetRestaurant request.
pub(super) fn parse_restaurant_id(value: &str) -> Result<RestaurantId, Status> {
    RestaurantId::parse(value).map_err(|description| platform::status::invalid_argument("restaurant_id", description))
}

pub(super) fn encode_restaurant(r: Restaurant) -> pb::Restaurant {
    pb::Restaurant {
        id: r.id.as_str().to_string(),
        name: r.name.as_str().to_string(),
        time_zone: r.time_zone.as_str().to_string(),
        address: r.address.as_str().to_string(),
        phone: r.phone.as_str().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::status::violated_fields;

    fn request(time_zone: &str) -> pb::PutRestaurantRequest {
        pb::PutRestaurantRequest {
            restaurant: Some(pb::Restaurant {
                id: "demo-bistro".into(),
                name: "Demo Bistro".into(),
                time_zone: time_zone.into(),
                address: "12 Rue de la Paix\n75002 Paris".into(),
                phone: "+33 1 23 45 67 89".into(),
            }),
        }
    }

    #[test]
    fn a_profile_parses_with_its_zone_spelled_canonically() {
        let parsed = parse_put_restaurant(request("europe/paris")).unwrap();
        assert_eq!(parsed.time_zone.as_str(), "Europe/Paris");
        assert_eq!(encode_restaurant(parsed).name, "Demo Bistro");
    }

    #[test]
    fn an_unknown_zone_and_every_other_wrong_field_are_named() {
        let status = parse_put_restaurant(request("Europe/Atlantis")).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["restaurant.time_zone"]);
        let all_wrong = pb::PutRestaurantRequest {
            restaurant: Some(pb::Restaurant {
                id: String::new(),
                name: " ".into(),
                time_zone: String::new(),
                address: "a".repeat(501),
                phone: "call us".into(),
            }),
        };
        assert_eq!(
            violated_fields(&parse_put_restaurant(all_wrong).unwrap_err()),
            vec!["restaurant.id", "restaurant.name", "restaurant.time_zone", "restaurant.address", "restaurant.phone"]
        );
        let missing = parse_put_restaurant(pb::PutRestaurantRequest { restaurant: None }).unwrap_err();
        assert_eq!(violated_fields(&missing), vec!["restaurant"]);
    }
}
