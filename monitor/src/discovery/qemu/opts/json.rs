//! JSON option arguments, flattened into QEMU's dotted key=value form so both syntaxes give
//! the same [`Props`].

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::Props;

/// A JSON value with object keys in their original order (`serde_json`'s `Map` sorts them).
enum Json {
    Scalar(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct JsonVisitor;
        impl<'de> Visitor<'de> for JsonVisitor {
            type Value = Json;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
                Ok(Json::Scalar(if v { "on" } else { "off" }.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
                Ok(Json::Scalar(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
                Ok(Json::Scalar(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
                Ok(Json::Scalar(v.to_string()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Json, E> {
                Ok(Json::Scalar(v.to_owned()))
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Scalar("null".into()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Json>()? {
                    entries.push((k, v));
                }
                Ok(Json::Object(entries))
            }
        }
        deserializer.deserialize_any(JsonVisitor)
    }
}

fn flatten(prefix: &str, value: Json, out: &mut Props) {
    let join = |key: &str| {
        if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        }
    };
    match value {
        Json::Scalar(s) => out.push(prefix, s),
        Json::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                flatten(&join(&i.to_string()), item, out);
            }
        }
        Json::Object(entries) => {
            for (k, v) in entries {
                flatten(&join(&k), v, out);
            }
        }
    }
}

/// `serde_json`'s own nesting limit (128) bounds the recursion here too.
pub(super) fn parse_json_object(s: &str) -> Result<Props, String> {
    match serde_json::from_str::<Json>(s) {
        Ok(Json::Object(entries)) => {
            let mut props = Props::default();
            flatten("", Json::Object(entries), &mut props);
            Ok(props)
        }
        Ok(_) => Err("JSON argument is not an object".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}
