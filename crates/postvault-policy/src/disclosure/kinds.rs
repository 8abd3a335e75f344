//! The kinds of instruments, the levels of their signers and the types of
//! requesters of a mail cover.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The kind of a legal instrument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstrumentKind {
    /// An order of a court of competent jurisdiction, 552a(b)(11).
    CourtOrder,
    /// A warrant issued by a court.
    Warrant,
    /// A written request of an agency head or delegate, 552a(b)(7).
    WrittenRequest,
    /// A subpoena, 39 CFR 265.14(d)(5)(iii).
    Subpoena,
    /// A mail-cover request, 39 CFR 233.3.
    MailCover,
}

impl InstrumentKind {
    pub const ALL: [InstrumentKind; 5] = [
        InstrumentKind::CourtOrder,
        InstrumentKind::Warrant,
        InstrumentKind::WrittenRequest,
        InstrumentKind::Subpoena,
        InstrumentKind::MailCover,
    ];

    /// The id used in JSON and `disclosure.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            InstrumentKind::CourtOrder => "court_order",
            InstrumentKind::Warrant => "warrant",
            InstrumentKind::WrittenRequest => "written_request",
            InstrumentKind::Subpoena => "subpoena",
            InstrumentKind::MailCover => "mail_cover",
        }
    }

    pub fn from_id(s: &str) -> Option<InstrumentKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether a pack may count this kind as an order of a court (R7, R9).
    /// A subpoena never is (265.14(d)(5)(iii)).
    pub fn may_be_court_order(self) -> bool {
        matches!(self, InstrumentKind::CourtOrder | InstrumentKind::Warrant)
    }
}

impl fmt::Display for InstrumentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The level of the official who signs an instrument, in order. `title` is
/// free text; this is what the rules compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignerLevel {
    Agent,
    Supervisor,
    SectionChief,
    /// The head of the agency (or the designee the rules allow in its place).
    AgencyHead,
}

impl SignerLevel {
    pub const ALL: [SignerLevel; 4] = [
        SignerLevel::Agent,
        SignerLevel::Supervisor,
        SignerLevel::SectionChief,
        SignerLevel::AgencyHead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SignerLevel::Agent => "agent",
            SignerLevel::Supervisor => "supervisor",
            SignerLevel::SectionChief => "section_chief",
            SignerLevel::AgencyHead => "agency_head",
        }
    }

    pub fn from_id(s: &str) -> Option<SignerLevel> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for SignerLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who asks for a mail cover (233.3(e)(1)-(2)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequesterType {
    PostalInspector,
    LawEnforcementAgency,
}

impl RequesterType {
    pub const ALL: [RequesterType; 2] = [
        RequesterType::PostalInspector,
        RequesterType::LawEnforcementAgency,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequesterType::PostalInspector => "postal_inspector",
            RequesterType::LawEnforcementAgency => "law_enforcement_agency",
        }
    }

    pub fn from_id(s: &str) -> Option<RequesterType> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for RequesterType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
