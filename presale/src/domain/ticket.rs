//! The applicant's place, as a signed token in a cookie: status polls read it with no
//! lookup at all, and it is bound to the national ID so a copied cookie is useless to
//! anyone else.

use service_kit::keys::Keyring;

use super::citizen::NationalId;

/// Where an applicant stands in one campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Place {
    /// Joined before the opening: the arrival number, whose ticket is drawn at the opening.
    Early(i64),
    /// Joined after the opening: the ticket number.
    Ticket(i64),
    /// A lottery entry number.
    Entry(i64),
}

impl Place {
    fn code(self) -> String {
        match self {
            Self::Early(n) => format!("E{n}"),
            Self::Ticket(n) => format!("T{n}"),
            Self::Entry(n) => format!("L{n}"),
        }
    }

    fn parse(code: &str) -> Option<Self> {
        let n: i64 = code.get(1..)?.parse().ok()?;
        match code.as_bytes().first()? {
            b'E' => Some(Self::Early(n)),
            b'T' => Some(Self::Ticket(n)),
            b'L' => Some(Self::Entry(n)),
            _ => None,
        }
    }
}

/// The cookie that carries a campaign's ticket.
pub fn cookie_name(license: &str) -> String {
    format!("emta_q_{license}")
}

/// Signs and reads tickets: `place.mac.owner`. `mac` proves the place was issued by this
/// service; `owner` binds it to the national ID, checked at apply time against the
/// signed-in citizen.
#[derive(Clone)]
pub struct Tickets {
    keys: Keyring,
}

impl Tickets {
    pub fn new(keys: Keyring) -> Self {
        Self { keys }
    }

    pub fn sign(&self, license: &str, national_id: &NationalId, place: Place) -> String {
        let p = place.code();
        let mac = self
            .keys
            .hash("ticket", format!("{license}|{p}").as_bytes());
        let owner = self.keys.hash(
            "ticket-owner",
            format!("{license}|{}|{p}", national_id.as_str()).as_bytes(),
        );
        format!("{p}.{mac}.{owner}")
    }

    /// The place in `token` if this service signed it for `license`; with `owner`, only if
    /// it also belongs to that national ID.
    pub fn read(&self, token: &str, license: &str, owner: Option<&NationalId>) -> Option<Place> {
        let mut parts = token.split('.');
        let (p, mac, own) = (parts.next()?, parts.next()?, parts.next()?);
        if !self
            .keys
            .verify("ticket", format!("{license}|{p}").as_bytes(), mac)
        {
            return None;
        }
        if let Some(nid) = owner {
            let data = format!("{license}|{}|{p}", nid.as_str());
            if !self.keys.verify("ticket-owner", data.as_bytes(), own) {
                return None;
            }
        }
        Place::parse(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_reads_back_only_for_its_owner_and_campaign() {
        let t = Tickets::new(Keyring::new(b"k", &[]));
        let me = NationalId::parse("0499370899").expect("valid");
        let other = NationalId::parse("0013542419").expect("valid");
        let token = t.sign("l-1", &me, Place::Ticket(42));
        assert_eq!(t.read(&token, "l-1", Some(&me)), Some(Place::Ticket(42)));
        assert_eq!(t.read(&token, "l-1", None), Some(Place::Ticket(42)));
        assert_eq!(t.read(&token, "l-1", Some(&other)), None);
        assert_eq!(t.read(&token, "l-2", None), None);
        assert_eq!(t.read(&token.replace("T42", "T41"), "l-1", None), None);
    }

    fn place() -> impl proptest::strategy::Strategy<Value = Place> {
        use proptest::prelude::*;
        prop_oneof![
            any::<i64>().prop_map(Place::Early),
            any::<i64>().prop_map(Place::Ticket),
            any::<i64>().prop_map(Place::Entry),
        ]
    }

    proptest::proptest! {
        /// Any cookie value is read as a place or refused, never a panic, and never as a
        /// place this service did not sign.
        #[test]
        fn any_cookie_is_read_or_refused(token in "\\PC{0,40}|[ETL]-?[0-9]{1,20}\\.[A-Za-z0-9_-]{0,44}\\.[A-Za-z0-9_-]{0,44}") {
            let t = Tickets::new(Keyring::new(b"k", &[]));
            let me = NationalId::parse("0499370899").expect("valid");
            proptest::prop_assert_eq!(t.read(&token, "l-1", Some(&me)), None);
            proptest::prop_assert_eq!(t.read(&token, "l-1", None), None);
        }

        /// A signed place reads back for its owner; a change of any one character of it
        /// reads as nothing (or, in the owner part when no owner is asked, as the same
        /// place).
        #[test]
        fn a_changed_ticket_is_refused(p in place(), at in proptest::prelude::any::<proptest::sample::Index>(), to in proptest::char::range('-', 'z')) {
            let t = Tickets::new(Keyring::new(b"k", &[]));
            let me = NationalId::parse("0499370899").expect("valid");
            let token = t.sign("l-1", &me, p);
            proptest::prop_assert_eq!(t.read(&token, "l-1", Some(&me)), Some(p));
            let i = at.index(token.len());
            let mut changed: Vec<char> = token.chars().collect();
            if changed[i] == to {
                return Ok(());
            }
            changed[i] = to;
            let changed: String = changed.into_iter().collect();
            proptest::prop_assert_eq!(t.read(&changed, "l-1", Some(&me)), None, "{} -> {}", token, changed);
            let anyone = t.read(&changed, "l-1", None);
            proptest::prop_assert!(anyone.is_none() || anyone == Some(p));
        }
    }
}
