//! Best fit: which free tables to give a party.
//!
//! The smallest single free table that seats the party wins; when none does, the
//! smallest combination of free tables within one non-empty combine group (fewest seats,
//! then fewest tables); remaining ties go to the lexicographically smallest list of table
//! ids. Pure and deterministic; it must never look at the database or the clock.

use super::types::{CombineGroup, PartySize, Seats, TableId};
use std::collections::BTreeMap;

/// One table of the plan and whether it is free for the requested slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableState {
    /// Table id.
    pub id: TableId,
    /// Seats.
    pub seats: Seats,
    /// Group it may be joined within.
    pub group: CombineGroup,
    /// No other booking holds it during the slot.
    pub free: bool,
}

/// A combination: total seats, then table count, then ids (ascending).
type Candidate = (u32, usize, Vec<TableId>);

/// The tables to reserve for `party`, ordered by id, or `None` when nothing free seats it.
pub fn best_fit(tables: &[TableState], party: PartySize) -> Option<Vec<TableId>> {
    let party = party.get();
    let single = tables
        .iter()
        .filter(|t| t.free && t.seats.get() >= party)
        .min_by(|a, b| (a.seats, &a.id).cmp(&(b.seats, &b.id)));
    if let Some(table) = single {
        return Some(vec![table.id.clone()]);
    }
    let mut groups: BTreeMap<&CombineGroup, Vec<&TableState>> = BTreeMap::new();
    for table in tables.iter().filter(|t| t.free && t.group.is_joinable()) {
        groups.entry(&table.group).or_default().push(table);
    }
    groups.into_values().filter_map(|members| best_combination(members, party)).min().map(|(_, _, ids)| ids)
}

/// The best combination of `members` (one group) seating `party`, by 0/1 knapsack over
/// exact seat totals. A minimal combination never exceeds `party + 99` seats (dropping its
/// smallest table would still seat the party otherwise), which bounds the table.
fn best_combination(mut members: Vec<&TableState>, party: u32) -> Option<Candidate> {
    members.sort_by(|a, b| a.id.cmp(&b.id));
    let limit = (party + super::types::MAX_PARTY) as usize;
    // best[s]: the (count, member indexes ascending) reaching exactly s seats.
    let mut best: Vec<Option<(usize, Vec<usize>)>> = vec![None; limit + 1];
    best[0] = Some((0, Vec::new()));
    for (index, member) in members.iter().enumerate() {
        let weight = member.seats.get() as usize;
        for total in (weight..=limit).rev() {
            // Indexes follow id order and `index` is the largest so far, so comparing
            // index lists compares id lists.
            let better = match (&best[total - weight], &best[total]) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some((count, picked)), Some((current_count, current))) => (count + 1)
                    .cmp(current_count)
                    .then_with(|| picked.iter().copied().chain(std::iter::once(index)).cmp(current.iter().copied()))
                    .is_lt(),
            };
            if better && let Some((count, picked)) = &best[total - weight] {
                let mut with = Vec::with_capacity(picked.len() + 1);
                with.extend_from_slice(picked);
                with.push(index);
                best[total] = Some((count + 1, with));
            }
        }
    }
    (party as usize..=limit).find_map(|total| {
        best[total].as_ref().map(|(count, picked)| {
            (total as u32, *count, picked.iter().map(|&i| members[i].id.clone()).collect::<Vec<_>>())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn table(id: &str, seats: i32, group: &str, free: bool) -> TableState {
        TableState {
            id: TableId::parse(id).expect("id"),
            seats: Seats::parse(seats).expect("seats"),
            group: CombineGroup::parse(group).expect("group"),
            free,
        }
    }

    fn party(n: i32) -> PartySize {
        PartySize::parse(n).expect("party")
    }

    fn ids(found: Option<Vec<TableId>>) -> Option<Vec<String>> {
        found.map(|ids| ids.into_iter().map(|id| id.as_str().to_string()).collect())
    }

    #[test]
    fn smallest_single_table_wins_ties_by_id() {
        let tables =
            [table("t9", 4, "", true), table("t2", 6, "", true), table("t3", 4, "", true), table("t1", 2, "", true)];
        assert_eq!(ids(best_fit(&tables, party(3))), Some(vec!["t3".into()]));
        assert_eq!(ids(best_fit(&tables, party(5))), Some(vec!["t2".into()]));
        assert_eq!(ids(best_fit(&tables, party(2))), Some(vec!["t1".into()]));
    }

    #[test]
    fn busy_tables_are_never_picked() {
        let tables = [table("a", 4, "g", false), table("b", 8, "g", true)];
        assert_eq!(ids(best_fit(&tables, party(2))), Some(vec!["b".into()]));
        assert_eq!(ids(best_fit(&tables, party(9))), None);
    }

    #[test]
    fn a_single_table_beats_a_tighter_combination() {
        let tables = [table("big", 10, "", true), table("a", 3, "g", true), table("b", 3, "g", true)];
        assert_eq!(ids(best_fit(&tables, party(6))), Some(vec!["big".into()]));
    }

    #[test]
    fn combines_within_one_group_only() {
        let within = [table("t1", 4, "main", true), table("t2", 4, "main", true)];
        assert_eq!(ids(best_fit(&within, party(6))), Some(vec!["t1".into(), "t2".into()]));
        let across = [table("t1", 4, "main", true), table("t2", 4, "patio", true)];
        assert_eq!(ids(best_fit(&across, party(6))), None);
        let ungrouped = [table("t1", 4, "", true), table("t2", 4, "", true)];
        assert_eq!(ids(best_fit(&ungrouped, party(6))), None);
    }

    #[test]
    fn combination_prefers_fewest_seats_then_fewest_tables_then_ids() {
        let tables = [
            table("a", 2, "g", true),
            table("b", 2, "g", true),
            table("c", 2, "g", true),
            table("d", 4, "g", true),
            table("e", 5, "h", true),
            table("f", 3, "h", true),
        ];
        // 7 guests: g offers 2+2+4=8 (3 tables), 2+2+2+... ; h offers 5+3=8 (2 tables).
        assert_eq!(ids(best_fit(&tables, party(7))), Some(vec!["e".into(), "f".into()]));
        // 6 guests: g offers 2+4=6 (a,d) and 2+2+2 (a,b,c): fewest tables wins.
        assert_eq!(ids(best_fit(&tables, party(6))), Some(vec!["a".into(), "d".into()]));
    }

    /// Every subset of free tables: the reference the knapsack must agree with.
    fn brute_force(tables: &[TableState], party: u32) -> Option<Vec<TableId>> {
        let single = tables
            .iter()
            .filter(|t| t.free && t.seats.get() >= party)
            .map(|t| (t.seats.get(), 1usize, vec![t.id.clone()]))
            .min();
        if let Some((_, _, ids)) = single {
            return Some(ids);
        }
        let mut best: Option<Candidate> = None;
        for mask in 1u32..(1 << tables.len()) {
            let picked: Vec<&TableState> =
                tables.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, t)| t).collect();
            if picked.len() < 2 || picked.iter().any(|t| !t.free || !t.group.is_joinable()) {
                continue;
            }
            if picked.iter().any(|t| t.group != picked[0].group) {
                continue;
            }
            let seats: u32 = picked.iter().map(|t| t.seats.get()).sum();
            if seats < party {
                continue;
            }
            let mut ids: Vec<TableId> = picked.iter().map(|t| t.id.clone()).collect();
            ids.sort();
            let candidate = (seats, ids.len(), ids);
            if best.as_ref().is_none_or(|b| candidate < *b) {
                best = Some(candidate);
            }
        }
        best.map(|(_, _, ids)| ids)
    }

    fn arb_tables(max: usize) -> impl Strategy<Value = Vec<TableState>> {
        proptest::collection::vec((1i32..=12, 0usize..3, any::<bool>()), 0..=max).prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (seats, group, free))| table(&format!("t{i:02}"), seats, ["", "g1", "g2"][group], free))
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn agrees_with_brute_force(tables in arb_tables(10), size in 1i32..=30) {
            prop_assert_eq!(best_fit(&tables, party(size)), brute_force(&tables, size as u32));
        }

        #[test]
        fn picks_only_free_tables_that_seat_the_party(tables in arb_tables(40), size in 1i32..=100) {
            if let Some(picked) = best_fit(&tables, party(size)) {
                let chosen: Vec<&TableState> =
                    picked.iter().map(|id| tables.iter().find(|t| &t.id == id).expect("known table")).collect();
                prop_assert!(chosen.iter().all(|t| t.free));
                prop_assert!(chosen.iter().map(|t| t.seats.get()).sum::<u32>() >= size as u32);
                if chosen.len() > 1 {
                    prop_assert!(chosen.iter().all(|t| t.group.is_joinable() && t.group == chosen[0].group));
                }
                let mut sorted = picked.clone();
                sorted.sort();
                sorted.dedup();
                prop_assert_eq!(sorted, picked, "ordered by id, no table twice");
            }
        }
    }
}
