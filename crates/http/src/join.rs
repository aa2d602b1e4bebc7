//! The parameters of Linked Entity retrieval (§4.5.23): `join`, `joinLevel` and `containedBy`, given as query
//! parameters or as members of a Query body (§5.2.23), and the bound they put on projections and queries
//! that reach into Linked Entities.

use misto_ngsild::linked::{Join, JoinKind, MAX_JOIN_LEVEL};
use misto_ngsild::NgsiError;

use crate::params::Params;

/// A join from its parts as given; None when no join is asked for (`join` absent or `@none`).
pub(crate) fn build(
    join: Option<&str>,
    level: Option<u64>,
    contained_by: Option<Vec<String>>,
) -> Result<Option<Join>, NgsiError> {
    let level = match level {
        None => 1,
        Some(l) if l == 0 || l > MAX_JOIN_LEVEL as u64 => {
            return Err(NgsiError::bad_data(format!(
                "joinLevel must be an integer from 1 to {MAX_JOIN_LEVEL}, not {l}"
            )))
        }
        Some(l) => l as usize,
    };
    let contained_by = contained_by.unwrap_or_default();
    if let Some(bad) = contained_by
        .iter()
        .find(|id| !misto_ngsild::validate::is_uri(id))
    {
        return Err(NgsiError::bad_data(format!(
            "containedBy: '{bad}' is not a URI"
        )));
    }
    let kind = match join {
        None | Some("@none") => return Ok(None),
        Some("inline") => JoinKind::Inline,
        Some("flat") => JoinKind::Flat,
        Some(other) => {
            return Err(NgsiError::bad_data(format!(
                "join must be inline, flat or @none, not '{other}'"
            )))
        }
    };
    Ok(Some(Join {
        kind,
        level,
        contained_by: contained_by.into_iter().collect(),
    }))
}

/// The join of a request's query parameters.
pub(crate) fn from_params(p: &Params) -> Result<Option<Join>, NgsiError> {
    let level = match p.non_empty("joinLevel")? {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            NgsiError::bad_data(format!("joinLevel must be a positive integer, not '{v}'"))
        })?),
    };
    build(p.non_empty("join")?, level, p.list("containedBy")?)
}

/// A selection (`pick`, `omit`, `q`) that reaches `depth` Relationships deep needs a join at least as deep:
/// Linked Entities are retrieved only with one (§5.7.2.4).
pub(crate) fn check_reach(what: &str, depth: usize, join: Option<&Join>) -> Result<(), NgsiError> {
    if depth == 0 {
        return Ok(());
    }
    match join {
        None => Err(NgsiError::bad_data(format!(
            "{what} reaches into Linked Entities, which are retrieved only with join=inline or join=flat"
        ))),
        Some(j) if depth > j.level => Err(NgsiError::bad_data(format!(
            "{what} reaches {depth} Relationships deep, deeper than joinLevel {}",
            j.level
        ))),
        Some(_) => Ok(()),
    }
}
