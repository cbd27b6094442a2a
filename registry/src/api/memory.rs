//! [`MemoryStore`]: the in-memory [`SchemaStore`]. Ids are global, one per distinct schema
//! (type + stored text + references + metadata + rule set, see [`super::governance`]), each
//! with a derived GUID, never reused; registration merges metadata and rule sets as Confluent
//! does (request or latest version, config default under, override over); the same schema
//! under two subjects keeps its id; deletes follow Confluent's two-step rule (soft first,
//! then `permanent=true`); a referenced version cannot be deleted; IMPORT mode takes
//! caller-chosen ids and skips compatibility checks; READONLY refuses writes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use super::governance::{
    derive_guid, guid_to_string, identity, merge_metadata, merge_rule_sets, validate_rule_set,
};
use super::store::{
    CompatibilityResult, ConfigRecord, Listing, Mode, Registered, RegistryError, SchemaById,
    SchemaRequest, SchemaStore, StoreResult, SubjectVersion, SubjectVersionRef, VersionSpec,
};
use crate::compat::{self, CompatibilityLevel};
use crate::contract::{Metadata, RuleSet};
use crate::schema::{ParsedSchema, Reference, ResolvedReference, SchemaType, fingerprint_of};

#[derive(Debug, Clone)]
struct SchemaEntry {
    schema_type: SchemaType,
    text: String,
    references: Vec<Reference>,
    parsed: Arc<ParsedSchema>,
    metadata: Option<Metadata>,
    rule_set: Option<RuleSet>,
    guid: [u8; 16],
    /// Identity: format fingerprint plus metadata and rule set ([`identity`]).
    fingerprint: String,
    /// The same over the normalised form.
    normalized_fingerprint: String,
}

#[derive(Debug, Clone, Copy)]
struct VersionEntry {
    version: i32,
    id: i32,
    deleted: bool,
}

#[derive(Debug, Default)]
struct Subject {
    versions: Vec<VersionEntry>,
    config: Option<ConfigRecord>,
    mode: Option<Mode>,
}

impl Subject {
    fn live(&self) -> impl Iterator<Item = &VersionEntry> {
        self.versions.iter().filter(|v| !v.deleted)
    }
    fn has_live(&self) -> bool {
        self.live().next().is_some()
    }
}

#[derive(Debug, Default)]
struct State {
    schemas: BTreeMap<i32, SchemaEntry>,
    by_fingerprint: HashMap<String, i32>,
    by_guid: HashMap<[u8; 16], BTreeSet<i32>>,
    subjects: BTreeMap<String, Subject>,
    max_id: i32,
    config: Option<ConfigRecord>,
    mode: Option<Mode>,
}

/// The in-memory schema store.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: RwLock<State>,
    /// Bumped whenever the state is locked for writing (see [`SchemaStore::generation`]).
    generation: std::sync::atomic::AtomicU64,
}

impl MemoryStore {
    /// An empty store (global compatibility BACKWARD, mode READWRITE).
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> StoreResult<std::sync::RwLockReadGuard<'_, State>> {
        self.state
            .read()
            .map_err(|_| RegistryError::Store("state lock poisoned".into()))
    }

    fn write(&self) -> StoreResult<std::sync::RwLockWriteGuard<'_, State>> {
        let guard = self
            .state
            .write()
            .map_err(|_| RegistryError::Store("state lock poisoned".into()))?;
        // Bumped under the lock, before any change: a reader that sees the new number and
        // then reads the state waits for the writer and sees the changed state.
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(guard)
    }

    /// See [`SchemaStore::generation`].
    pub fn current_generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }
}

fn guid_not_found(guid: &[u8; 16]) -> RegistryError {
    RegistryError::SchemaNotFound(format!("Schema {} not found", guid_to_string(guid)))
}

#[async_trait]
impl crate::validate::GuidLookup for MemoryStore {
    async fn id_for_guid(&self, guid: [u8; 16]) -> StoreResult<Option<i32>> {
        Ok(self
            .read()?
            .by_guid
            .get(&guid)
            .and_then(|ids| ids.first().copied()))
    }
}

fn subject_name_ok(subject: &str) -> StoreResult<()> {
    if subject.is_empty() || subject.chars().any(|c| c.is_control()) {
        return Err(RegistryError::InvalidSubject(subject.to_string()));
    }
    Ok(())
}

impl State {
    fn resolve(&self, r: &Reference) -> Option<ResolvedReference> {
        let subj = self.subjects.get(&r.subject)?;
        let ve = if r.version == -1 {
            subj.live().last()?
        } else {
            subj.versions.iter().find(|v| v.version == r.version)?
        };
        let e = self.schemas.get(&ve.id)?;
        Some(ResolvedReference {
            schema: e.text.clone(),
            references: e.references.clone(),
        })
    }

    fn parse(&self, req: &SchemaRequest) -> StoreResult<ParsedSchema> {
        let t = req.parsed_type()?;
        let refs = req.references.clone().unwrap_or_default();
        let resolver = |r: &Reference| self.resolve(r);
        Ok(ParsedSchema::parse(t, req.text()?, &refs, &resolver)?)
    }

    fn level(&self, subject: &str) -> CompatibilityLevel {
        self.subjects
            .get(subject)
            .and_then(|s| s.config.as_ref())
            .and_then(|c| c.compatibility)
            .or(self.config.as_ref().and_then(|c| c.compatibility))
            .unwrap_or_default()
    }

    /// The subject's config, falling back field-wise to the global one.
    fn effective_config(&self, subject: &str) -> ConfigRecord {
        let global = self.config.clone().unwrap_or_default();
        match self.subjects.get(subject).and_then(|s| s.config.as_ref()) {
            Some(c) => c.or(&global),
            None => global,
        }
    }

    /// The latest live version of a subject with its schema.
    fn latest_live(&self, subject: &str) -> Option<(VersionEntry, &SchemaEntry)> {
        let v = *self.subjects.get(subject)?.live().last()?;
        Some((v, self.schemas.get(&v.id)?))
    }

    /// Confluent's `maybeSetMetadataRuleSet`: the request's metadata and rule set, else the
    /// previous version's, with the config default under them and the override over them.
    fn contract_for(
        &self,
        subject: &str,
        req: &SchemaRequest,
        previous: Option<&SchemaEntry>,
    ) -> (Option<Metadata>, Option<RuleSet>) {
        let cfg = self.effective_config(subject);
        let md = req
            .metadata
            .clone()
            .or_else(|| previous.and_then(|p| p.metadata.clone()));
        let rs = req
            .rule_set
            .clone()
            .or_else(|| previous.and_then(|p| p.rule_set.clone()));
        let md = merge_metadata(
            merge_metadata(cfg.default_metadata.as_ref(), md.as_ref()).as_ref(),
            cfg.override_metadata.as_ref(),
        );
        let rs = merge_rule_sets(
            merge_rule_sets(cfg.default_rule_set.as_ref(), rs.as_ref()).as_ref(),
            cfg.override_rule_set.as_ref(),
        );
        (md, rs)
    }

    /// The live (or, with `deleted`, any) version of `subject` holding `parsed` with this
    /// metadata and rule set, newest first.
    fn find_same(
        &self,
        subject: &str,
        parsed: &ParsedSchema,
        text: &str,
        contract: (Option<&Metadata>, Option<&RuleSet>),
        normalize: bool,
        deleted: bool,
    ) -> Option<VersionEntry> {
        let fp = fingerprint_of(parsed.schema_type(), text, parsed.references());
        let ident = identity(&fp, contract.0, contract.1);
        let nident = identity(&parsed.fingerprint(true), contract.0, contract.1);
        let loose = normalize || parsed.from_descriptor();
        let s = self.subjects.get(subject)?;
        s.versions
            .iter()
            .rev()
            .filter(|v| deleted || !v.deleted)
            .find(|v| {
                self.schemas.get(&v.id).is_some_and(|e| {
                    e.fingerprint == ident || (loose && e.normalized_fingerprint == nident)
                })
            })
            .copied()
    }

    fn mode_of(&self, subject: &str) -> Mode {
        self.subjects
            .get(subject)
            .and_then(|s| s.mode)
            .or(self.mode)
            .unwrap_or_default()
    }

    fn writable(&self, subject: &str) -> StoreResult<Mode> {
        let m = self.mode_of(subject);
        if matches!(m, Mode::Readonly | Mode::ReadonlyOverride) {
            return Err(RegistryError::OperationNotPermitted(format!(
                "Subject {subject} is in read-only mode"
            )));
        }
        Ok(m)
    }

    fn subject(&self, subject: &str) -> StoreResult<&Subject> {
        self.subjects
            .get(subject)
            .filter(|s| !s.versions.is_empty())
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))
    }

    fn find_version(
        &self,
        subject: &str,
        spec: VersionSpec,
        deleted: bool,
    ) -> StoreResult<VersionEntry> {
        let s = self.subject(subject)?;
        if !deleted && !s.has_live() {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        let found = match spec {
            VersionSpec::Latest => s.versions.iter().rev().find(|v| deleted || !v.deleted),
            VersionSpec::Number(n) => s
                .versions
                .iter()
                .find(|v| v.version == n && (deleted || !v.deleted)),
        };
        found.copied().ok_or_else(|| {
            RegistryError::VersionNotFound(match spec {
                VersionSpec::Latest => "latest".into(),
                VersionSpec::Number(n) => n.to_string(),
            })
        })
    }

    fn subject_version(&self, subject: &str, v: VersionEntry) -> StoreResult<SubjectVersion> {
        let e = self
            .schemas
            .get(&v.id)
            .ok_or_else(|| RegistryError::Store(format!("schema {} missing", v.id)))?;
        Ok(SubjectVersion {
            subject: subject.to_string(),
            version: v.version,
            id: v.id,
            schema_type: e.schema_type,
            references: e.references.clone(),
            schema: e.text.clone(),
            metadata: e.metadata.clone(),
            rule_set: e.rule_set.clone(),
            guid: guid_to_string(&e.guid),
            deleted: v.deleted,
        })
    }

    /// Ids of schemas (in live or soft-deleted versions) that reference `subject` `version`.
    fn referrers(&self, subject: &str, version: i32) -> Vec<i32> {
        let mut ids: Vec<i32> = self
            .schemas
            .iter()
            .filter(|(_, e)| {
                e.references
                    .iter()
                    .any(|r| r.subject == subject && r.version == version)
            })
            .map(|(id, _)| *id)
            .filter(|id| {
                self.subjects
                    .values()
                    .any(|s| s.versions.iter().any(|v| v.id == *id))
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn gc(&mut self) {
        let used: std::collections::HashSet<i32> = self
            .subjects
            .values()
            .flat_map(|s| s.versions.iter().map(|v| v.id))
            .collect();
        let dead: Vec<i32> = self
            .schemas
            .keys()
            .filter(|id| !used.contains(id))
            .copied()
            .collect();
        for id in dead {
            if let Some(e) = self.schemas.remove(&id) {
                if self.by_fingerprint.get(&e.fingerprint) == Some(&id) {
                    self.by_fingerprint.remove(&e.fingerprint);
                }
                if let Some(ids) = self.by_guid.get_mut(&e.guid) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        self.by_guid.remove(&e.guid);
                    }
                }
            }
        }
        self.subjects
            .retain(|_, s| !s.versions.is_empty() || s.config.is_some() || s.mode.is_some());
    }

    fn compat_messages(
        &self,
        subject: &str,
        new: compat::Version<'_>,
        against: &[VersionEntry],
        level: CompatibilityLevel,
    ) -> Vec<String> {
        let previous: Vec<compat::Version<'_>> = against
            .iter()
            .filter_map(|v| {
                self.schemas.get(&v.id).map(|e| compat::Version {
                    schema: &e.parsed,
                    metadata: e.metadata.as_ref(),
                })
            })
            .collect();
        let found = compat::check_versions(new, &previous, level);
        let Some(first) = found.first() else {
            return Vec::new();
        };
        let mut msgs: Vec<String> = found.iter().map(|i| i.message()).collect();
        if let Some(v) = against.get(first.previous_index) {
            msgs.push(format!("{{oldSchemaVersion: {}}}", v.version));
            if let Some(e) = self.schemas.get(&v.id) {
                msgs.push(format!("{{oldSchema: '{}'}}", e.text));
            }
        }
        msgs.push(format!(
            "{{validateFields: 'false', compatibility: '{level}'}}"
        ));
        let _ = subject;
        msgs
    }
}

/// One change to the registry state: the unit both of the in-memory state machine and of the
/// `_schemas` log (see [`crate::kafka::record`] for the record layout of each variant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A subject-version, live or soft-deleted (`SCHEMA` key).
    Schema(SchemaRecord),
    /// Hard delete of a subject-version (tombstone of its `SCHEMA` key).
    SchemaRemoved {
        /// Subject.
        subject: String,
        /// Version.
        version: i32,
    },
    /// Soft delete of every version of `subject` up to `version` (`DELETE_SUBJECT`).
    DeleteSubject {
        /// Subject.
        subject: String,
        /// Highest version covered.
        version: i32,
    },
    /// `CLEAR_SUBJECT`: read for compatibility with Confluent's log; no state change (the
    /// `SCHEMA` tombstones carry the hard delete).
    ClearSubject {
        /// Subject.
        subject: String,
    },
    /// Global (`subject: None`) or subject config (compatibility and data-contract defaults
    /// and overrides); `config: None` removes it.
    Config {
        /// Subject, or `None` for the global setting.
        subject: Option<String>,
        /// The whole new record, or `None` (tombstone).
        config: Option<ConfigRecord>,
    },
    /// Global or subject mode; `mode: None` removes it.
    Mode {
        /// Subject, or `None` for the global setting.
        subject: Option<String>,
        /// New mode, or `None` (tombstone).
        mode: Option<Mode>,
    },
    /// The highest schema id ever allocated (never tombstoned, so ids survive hard deletes).
    IdHighWater {
        /// Highest id.
        id: i32,
    },
}

/// A subject-version as stored in the log (`SchemaValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaRecord {
    /// Subject.
    pub subject: String,
    /// Version.
    pub version: i32,
    /// Global id.
    pub id: i32,
    /// Format.
    pub schema_type: SchemaType,
    /// Stored schema text.
    pub schema: String,
    /// References.
    pub references: Vec<Reference>,
    /// Data-contract metadata.
    pub metadata: Option<Metadata>,
    /// Data-contract rule set.
    pub rule_set: Option<RuleSet>,
    /// GUID as written in the record (`None`: derived when applied).
    pub guid: Option<[u8; 16]>,
    /// Soft-deleted.
    pub deleted: bool,
}

/// A write request, validated by [`MemoryStore::plan`] into [`Change`]s.
/// One state change of the registry, as every [`super::SchemaStore`] applies it.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub enum WriteOp {
    Register {
        subject: String,
        req: SchemaRequest,
        normalize: bool,
    },
    DeleteSubject {
        subject: String,
        permanent: bool,
    },
    DeleteVersion {
        subject: String,
        version: VersionSpec,
        permanent: bool,
    },
    SetConfig {
        subject: Option<String>,
        update: ConfigRecord,
    },
    DeleteConfig {
        subject: Option<String>,
    },
    SetMode {
        subject: Option<String>,
        mode: Mode,
        force: bool,
    },
    DeleteMode {
        subject: Option<String>,
    },
}

/// The answer a write gives once its changes are applied.
/// What a [`WriteOp`] produced.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub enum WriteOut {
    Registered(Registered),
    Versions(Vec<i32>),
    Version(i32),
    Level(CompatibilityLevel),
    Mode(Mode),
    Done,
}

impl WriteOut {
    pub(crate) fn registered(self) -> StoreResult<Registered> {
        match self {
            WriteOut::Registered(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }
    pub(crate) fn versions(self) -> StoreResult<Vec<i32>> {
        match self {
            WriteOut::Versions(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }
    pub(crate) fn version(self) -> StoreResult<i32> {
        match self {
            WriteOut::Version(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }
    pub(crate) fn level(self) -> StoreResult<CompatibilityLevel> {
        match self {
            WriteOut::Level(l) => Ok(l),
            other => Err(unexpected(&other)),
        }
    }
    pub(crate) fn mode(self) -> StoreResult<Mode> {
        match self {
            WriteOut::Mode(m) => Ok(m),
            other => Err(unexpected(&other)),
        }
    }
    pub(crate) fn done(self) -> StoreResult<()> {
        match self {
            WriteOut::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(out: &WriteOut) -> RegistryError {
    RegistryError::Store(format!("internal: unexpected write result {out:?}"))
}

/// A validated write: its answer, the changes that make it durable, and the parsed schema of
/// a registration (so applying it does not parse again).
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) out: WriteOut,
    pub(crate) changes: Vec<Change>,
    pub(crate) parsed: Option<ParsedSchema>,
}

impl Plan {
    fn new(out: WriteOut, changes: Vec<Change>) -> Self {
        Plan {
            out,
            changes,
            parsed: None,
        }
    }
}

impl MemoryStore {
    /// Validates `op` against the current state and returns the changes it needs (nothing is
    /// applied).
    pub(crate) fn plan(&self, op: WriteOp) -> StoreResult<Plan> {
        self.read()?.plan(op)
    }

    /// Applies changes (from a plan, or replayed from the log) in order.
    pub(crate) fn apply(
        &self,
        changes: &[Change],
        parsed: Option<ParsedSchema>,
    ) -> StoreResult<()> {
        let mut st = self.write()?;
        st.apply_all(changes, parsed);
        Ok(())
    }

    /// Plans and applies `op` under one lock.
    fn execute(&self, op: WriteOp) -> StoreResult<WriteOut> {
        let mut st = self.write()?;
        let plan = st.plan(op)?;
        st.apply_all(&plan.changes, plan.parsed);
        Ok(plan.out)
    }
}

impl State {
    fn record_of(
        &self,
        subject: &str,
        v: VersionEntry,
        deleted: bool,
    ) -> StoreResult<SchemaRecord> {
        let e = self
            .schemas
            .get(&v.id)
            .ok_or_else(|| RegistryError::Store(format!("schema {} missing", v.id)))?;
        Ok(SchemaRecord {
            subject: subject.to_string(),
            version: v.version,
            id: v.id,
            schema_type: e.schema_type,
            schema: e.text.clone(),
            references: e.references.clone(),
            metadata: e.metadata.clone(),
            rule_set: e.rule_set.clone(),
            guid: Some(e.guid),
            deleted,
        })
    }

    fn plan(&self, op: WriteOp) -> StoreResult<Plan> {
        match op {
            WriteOp::Register {
                subject,
                req,
                normalize,
            } => self.plan_register(&subject, req, normalize),
            WriteOp::DeleteSubject { subject, permanent } => {
                self.plan_delete_subject(&subject, permanent)
            }
            WriteOp::DeleteVersion {
                subject,
                version,
                permanent,
            } => self.plan_delete_version(&subject, version, permanent),
            WriteOp::SetConfig { subject, update } => {
                if let Some(s) = &subject {
                    subject_name_ok(s)?;
                }
                for rs in [&update.default_rule_set, &update.override_rule_set]
                    .into_iter()
                    .flatten()
                {
                    validate_rule_set(rs)?;
                }
                let old = match &subject {
                    None => self.config.clone(),
                    Some(s) => self.subjects.get(s).and_then(|x| x.config.clone()),
                }
                .unwrap_or_default();
                Ok(Plan::new(
                    WriteOut::Done,
                    vec![Change::Config {
                        subject,
                        config: Some(old.updated(&update)),
                    }],
                ))
            }
            WriteOp::DeleteConfig { subject } => {
                let prev = match &subject {
                    None => self
                        .config
                        .as_ref()
                        .and_then(|c| c.compatibility)
                        .unwrap_or_default(),
                    Some(s) => self
                        .subjects
                        .get(s)
                        .and_then(|x| x.config.as_ref())
                        .map(|c| c.compatibility.unwrap_or_default())
                        .ok_or_else(|| RegistryError::SubjectNotFound(s.to_string()))?,
                };
                Ok(Plan::new(
                    WriteOut::Level(prev),
                    vec![Change::Config {
                        subject,
                        config: None,
                    }],
                ))
            }
            WriteOp::SetMode {
                subject,
                mode,
                force,
            } => {
                if mode == Mode::Import && !force {
                    let non_empty = match &subject {
                        None => self.subjects.values().any(|s| !s.versions.is_empty()),
                        Some(s) => self.subjects.get(s).is_some_and(|x| !x.versions.is_empty()),
                    };
                    if non_empty {
                        return Err(RegistryError::OperationNotPermitted(
                            "Cannot import since found existing subjects".into(),
                        ));
                    }
                }
                if let Some(s) = &subject {
                    subject_name_ok(s)?;
                }
                Ok(Plan::new(
                    WriteOut::Done,
                    vec![Change::Mode {
                        subject,
                        mode: Some(mode),
                    }],
                ))
            }
            WriteOp::DeleteMode { subject } => {
                let prev = match &subject {
                    None => self.mode.unwrap_or_default(),
                    Some(s) => self
                        .subjects
                        .get(s)
                        .and_then(|x| x.mode)
                        .ok_or_else(|| RegistryError::SubjectNotFound(s.to_string()))?,
                };
                Ok(Plan::new(
                    WriteOut::Mode(prev),
                    vec![Change::Mode {
                        subject,
                        mode: None,
                    }],
                ))
            }
        }
    }

    fn plan_register(
        &self,
        subject: &str,
        mut req: SchemaRequest,
        normalize: bool,
    ) -> StoreResult<Plan> {
        subject_name_ok(subject)?;
        let mode = self.writable(subject)?;
        if let Some(rs) = &req.rule_set {
            validate_rule_set(rs)?;
        }
        let previous = self.latest_live(subject);
        // An empty schema re-registers the latest one (with new metadata or rules), as
        // Confluent's `maybePopulateFromPrevious` does.
        if req.schema.as_deref().is_none_or(|t| t.trim().is_empty())
            && let Some((_, e)) = previous
        {
            req.schema = Some(e.text.clone());
            req.schema_type = Some(e.schema_type.as_str().to_string());
            req.references = Some(e.references.clone());
        }
        let (metadata, rule_set) = if mode == Mode::Import {
            (req.metadata.clone(), req.rule_set.clone())
        } else {
            self.contract_for(subject, &req, previous.map(|p| p.1))
        };
        if let Some(rs) = &rule_set {
            validate_rule_set(rs)?;
        }
        let parsed = self.parse(&req)?;
        let text = parsed.stored_string(normalize).to_string();
        let fp = identity(
            &fingerprint_of(parsed.schema_type(), &text, parsed.references()),
            metadata.as_ref(),
            rule_set.as_ref(),
        );
        // Idempotent: an identical live version is returned as is.
        if let Some(v) = self.find_same(
            subject,
            &parsed,
            &text,
            (metadata.as_ref(), rule_set.as_ref()),
            normalize,
            false,
        ) && req.id.is_none_or(|id| id == v.id)
        {
            let guid = self
                .schemas
                .get(&v.id)
                .map(|e| guid_to_string(&e.guid))
                .unwrap_or_default();
            return Ok(Plan::new(
                WriteOut::Registered(Registered {
                    id: v.id,
                    version: v.version,
                    guid,
                }),
                Vec::new(),
            ));
        }
        if mode != Mode::Import {
            if req
                .id
                .is_some_and(|id| self.by_fingerprint.get(&fp) != Some(&id))
            {
                return Err(RegistryError::OperationNotPermitted(format!(
                    "Subject {subject} is not in import mode"
                )));
            }
            let level = self.level(subject);
            let live: Vec<VersionEntry> = self
                .subjects
                .get(subject)
                .map(|s| s.live().copied().collect())
                .unwrap_or_default();
            let new = compat::Version {
                schema: &parsed,
                metadata: metadata.as_ref(),
            };
            let msgs = self.compat_messages(subject, new, &live, level);
            if !msgs.is_empty() {
                return Err(RegistryError::Incompatible {
                    subject: subject.to_string(),
                    details: msgs,
                });
            }
        }
        let id = match req.id {
            Some(id) if mode == Mode::Import => {
                if id < 1 {
                    return Err(RegistryError::OperationNotPermitted(format!(
                        "Invalid id {id}"
                    )));
                }
                if let Some(e) = self.schemas.get(&id)
                    && e.fingerprint != fp
                {
                    return Err(RegistryError::OperationNotPermitted(format!(
                        "Overwrite new schema with id {id} is not permitted."
                    )));
                }
                id
            }
            _ => match self.by_fingerprint.get(&fp) {
                Some(id) => *id,
                None => self
                    .max_id
                    .checked_add(1)
                    .ok_or_else(|| RegistryError::Store("id space exhausted".into()))?,
            },
        };
        let existing = self.subjects.get(subject).map(|s| s.versions.as_slice());
        let next = existing
            .and_then(|v| v.last())
            .map_or(1, |v| v.version.saturating_add(1));
        let version = match req.version {
            Some(v) if mode == Mode::Import && v >= 1 => {
                if existing.is_some_and(|vs| vs.iter().any(|x| x.version == v)) {
                    return Err(RegistryError::OperationNotPermitted(format!(
                        "Version {v} already exists in subject {subject}"
                    )));
                }
                v
            }
            _ => next,
        };
        let guid = self
            .schemas
            .get(&id)
            .map_or_else(|| derive_guid(&fp), |e| e.guid);
        let mut changes = Vec::with_capacity(2);
        if id > self.max_id {
            changes.push(Change::IdHighWater { id });
        }
        changes.push(Change::Schema(SchemaRecord {
            subject: subject.to_string(),
            version,
            id,
            schema_type: parsed.schema_type(),
            schema: text,
            references: parsed.references().to_vec(),
            metadata,
            rule_set,
            guid: Some(guid),
            deleted: false,
        }));
        Ok(Plan {
            out: WriteOut::Registered(Registered {
                id,
                version,
                guid: guid_to_string(&guid),
            }),
            changes,
            parsed: Some(parsed),
        })
    }

    fn plan_delete_subject(&self, subject: &str, permanent: bool) -> StoreResult<Plan> {
        self.writable(subject)?;
        let s = self.subject(subject)?;
        let all: Vec<i32> = s.versions.iter().map(|v| v.version).collect();
        if permanent {
            if s.has_live() {
                return Err(RegistryError::SubjectNotSoftDeleted(subject.to_string()));
            }
            for v in &all {
                if !self.referrers(subject, *v).is_empty() {
                    return Err(RegistryError::ReferenceExists(subject.to_string(), *v));
                }
            }
            let changes = all
                .iter()
                .map(|v| Change::SchemaRemoved {
                    subject: subject.to_string(),
                    version: *v,
                })
                .collect();
            Ok(Plan::new(WriteOut::Versions(all), changes))
        } else {
            if !s.has_live() {
                return Err(RegistryError::SubjectSoftDeleted(subject.to_string()));
            }
            let live: Vec<VersionEntry> = s.live().copied().collect();
            for v in &live {
                if !self.referrers(subject, v.version).is_empty() {
                    return Err(RegistryError::ReferenceExists(
                        subject.to_string(),
                        v.version,
                    ));
                }
            }
            let mut changes = vec![Change::DeleteSubject {
                subject: subject.to_string(),
                version: all.last().copied().unwrap_or(0),
            }];
            for v in &live {
                changes.push(Change::Schema(self.record_of(subject, *v, true)?));
            }
            Ok(Plan::new(
                WriteOut::Versions(live.iter().map(|v| v.version).collect()),
                changes,
            ))
        }
    }

    fn plan_delete_version(
        &self,
        subject: &str,
        version: VersionSpec,
        permanent: bool,
    ) -> StoreResult<Plan> {
        self.writable(subject)?;
        let include_deleted = permanent || matches!(version, VersionSpec::Number(_));
        let v = self.find_version(subject, version, include_deleted)?;
        if permanent && !v.deleted {
            return Err(RegistryError::VersionNotSoftDeleted(
                subject.to_string(),
                v.version,
            ));
        }
        if !permanent && v.deleted {
            return Err(RegistryError::VersionSoftDeleted(
                subject.to_string(),
                v.version,
            ));
        }
        if !self.referrers(subject, v.version).is_empty() {
            return Err(RegistryError::ReferenceExists(
                subject.to_string(),
                v.version,
            ));
        }
        let change = if permanent {
            Change::SchemaRemoved {
                subject: subject.to_string(),
                version: v.version,
            }
        } else {
            Change::Schema(self.record_of(subject, v, true)?)
        };
        Ok(Plan::new(WriteOut::Version(v.version), vec![change]))
    }

    fn apply_all(&mut self, changes: &[Change], mut parsed: Option<ParsedSchema>) {
        for c in changes {
            self.apply(c, &mut parsed);
        }
    }

    /// Applies one change. Records that cannot be applied (a schema that no longer parses) are
    /// logged and skipped: replay must not stop on one bad record.
    fn apply(&mut self, change: &Change, parsed: &mut Option<ParsedSchema>) {
        match change {
            Change::Schema(r) => self.apply_schema(r, parsed),
            Change::SchemaRemoved { subject, version } => {
                if let Some(s) = self.subjects.get_mut(subject) {
                    s.versions.retain(|x| x.version != *version);
                }
                self.gc();
            }
            Change::DeleteSubject { subject, version } => {
                if let Some(s) = self.subjects.get_mut(subject) {
                    for v in s.versions.iter_mut().filter(|v| v.version <= *version) {
                        v.deleted = true;
                    }
                }
            }
            Change::ClearSubject { .. } => {}
            Change::Config { subject, config } => match subject {
                None => self.config = config.clone(),
                Some(s) => {
                    self.subjects.entry(s.clone()).or_default().config = config.clone();
                    if config.is_none() {
                        self.gc();
                    }
                }
            },
            Change::Mode { subject, mode } => match subject {
                None => self.mode = *mode,
                Some(s) => {
                    self.subjects.entry(s.clone()).or_default().mode = *mode;
                    if mode.is_none() {
                        self.gc();
                    }
                }
            },
            Change::IdHighWater { id } => self.max_id = self.max_id.max(*id),
        }
    }

    fn apply_schema(&mut self, r: &SchemaRecord, parsed: &mut Option<ParsedSchema>) {
        if !self.schemas.contains_key(&r.id) {
            let p = match parsed.take() {
                Some(p) => p,
                None => {
                    let resolver = |x: &Reference| self.resolve(x);
                    match ParsedSchema::parse(r.schema_type, &r.schema, &r.references, &resolver) {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(
                                subject = %r.subject, version = r.version, id = r.id,
                                "skipping a stored schema that does not parse: {e}"
                            );
                            self.max_id = self.max_id.max(r.id);
                            return;
                        }
                    }
                }
            };
            let (md, rs) = (r.metadata.as_ref(), r.rule_set.as_ref());
            let fp = identity(
                &fingerprint_of(r.schema_type, &r.schema, &r.references),
                md,
                rs,
            );
            let guid = r.guid.unwrap_or_else(|| derive_guid(&fp));
            self.schemas.insert(
                r.id,
                SchemaEntry {
                    schema_type: r.schema_type,
                    text: r.schema.clone(),
                    references: r.references.clone(),
                    normalized_fingerprint: identity(&p.fingerprint(true), md, rs),
                    fingerprint: fp.clone(),
                    metadata: r.metadata.clone(),
                    rule_set: r.rule_set.clone(),
                    guid,
                    parsed: Arc::new(p),
                },
            );
            self.by_fingerprint.entry(fp).or_insert(r.id);
            self.by_guid.entry(guid).or_default().insert(r.id);
        }
        self.max_id = self.max_id.max(r.id);
        let subj = self.subjects.entry(r.subject.clone()).or_default();
        let mut rebound = false;
        match subj.versions.iter_mut().find(|v| v.version == r.version) {
            Some(v) => {
                rebound = v.id != r.id;
                v.id = r.id;
                v.deleted = r.deleted;
            }
            None => {
                subj.versions.push(VersionEntry {
                    version: r.version,
                    id: r.id,
                    deleted: r.deleted,
                });
                subj.versions.sort_by_key(|v| v.version);
            }
        }
        if rebound {
            tracing::warn!(subject = %r.subject, version = r.version, "version rebound to another id");
            self.gc();
        }
    }
}

#[async_trait]
impl SchemaStore for MemoryStore {
    async fn execute_write(&self, op: WriteOp) -> StoreResult<WriteOut> {
        self.execute(op)
    }

    fn generation(&self) -> Option<u64> {
        Some(self.current_generation())
    }

    async fn lookup(
        &self,
        subject: &str,
        req: SchemaRequest,
        normalize: bool,
        deleted: bool,
    ) -> StoreResult<SubjectVersion> {
        let st = self.read()?;
        st.subject(subject)?;
        let parsed = st.parse(&req)?;
        let text = parsed.canonical_string();
        let asked = (req.metadata.as_ref(), req.rule_set.as_ref());
        if let Some(v) = st.find_same(subject, &parsed, text, asked, normalize, deleted) {
            return st.subject_version(subject, v);
        }
        // Like Confluent: retry with the metadata and rule set a registration would use.
        if let Some((_, prev)) = st.latest_live(subject) {
            let (md, rs) = st.contract_for(subject, &req, Some(prev));
            if (md.as_ref(), rs.as_ref()) != asked
                && let Some(v) = st.find_same(
                    subject,
                    &parsed,
                    text,
                    (md.as_ref(), rs.as_ref()),
                    normalize,
                    deleted,
                )
            {
                return st.subject_version(subject, v);
            }
        }
        Err(RegistryError::SchemaNotFound("Schema not found".into()))
    }

    async fn schema_by_id(&self, id: i32) -> StoreResult<SchemaById> {
        let st = self.read()?;
        let e = st
            .schemas
            .get(&id)
            .ok_or_else(|| RegistryError::SchemaNotFound(format!("Schema {id} not found")))?;
        Ok(SchemaById {
            schema: e.text.clone(),
            schema_type: e.schema_type,
            references: e.references.clone(),
            metadata: e.metadata.clone(),
            rule_set: e.rule_set.clone(),
            guid: guid_to_string(&e.guid),
        })
    }

    async fn subjects_by_id(&self, id: i32, deleted: bool) -> StoreResult<Vec<String>> {
        Ok(self
            .versions_by_id(id, deleted)
            .await?
            .into_iter()
            .map(|v| v.subject)
            .fold(Vec::new(), |mut acc, s| {
                if !acc.contains(&s) {
                    acc.push(s);
                }
                acc
            }))
    }

    async fn versions_by_id(&self, id: i32, deleted: bool) -> StoreResult<Vec<SubjectVersionRef>> {
        let st = self.read()?;
        if !st.schemas.contains_key(&id) {
            return Err(RegistryError::SchemaNotFound(format!(
                "Schema {id} not found"
            )));
        }
        Ok(st
            .subjects
            .iter()
            .flat_map(|(name, s)| {
                s.versions
                    .iter()
                    .filter(move |v| v.id == id && (deleted || !v.deleted))
                    .map(move |v| SubjectVersionRef {
                        subject: name.clone(),
                        version: v.version,
                    })
            })
            .collect())
    }

    async fn max_id(&self) -> StoreResult<i32> {
        Ok(self.read()?.max_id)
    }

    async fn subjects(&self, prefix: Option<&str>, listing: Listing) -> StoreResult<Vec<String>> {
        let st = self.read()?;
        let prefix = prefix.filter(|p| *p != ":*:").unwrap_or("");
        Ok(st
            .subjects
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .filter(|(_, s)| {
                let live = s.has_live();
                let any_deleted = s.versions.iter().any(|v| v.deleted);
                if listing.deleted_only {
                    any_deleted
                } else if listing.deleted {
                    !s.versions.is_empty()
                } else {
                    live
                }
            })
            .map(|(n, _)| n.clone())
            .collect())
    }

    async fn versions(&self, subject: &str, listing: Listing) -> StoreResult<Vec<i32>> {
        let st = self.read()?;
        let s = st.subject(subject)?;
        let out: Vec<i32> = s
            .versions
            .iter()
            .filter(|v| {
                if listing.deleted_only {
                    v.deleted
                } else {
                    listing.deleted || !v.deleted
                }
            })
            .map(|v| v.version)
            .collect();
        if out.is_empty() && !listing.deleted_only {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        Ok(out)
    }

    async fn version(
        &self,
        subject: &str,
        version: VersionSpec,
        deleted: bool,
    ) -> StoreResult<SubjectVersion> {
        let st = self.read()?;
        let v = st.find_version(subject, version, deleted)?;
        st.subject_version(subject, v)
    }

    async fn schemas(
        &self,
        prefix: Option<&str>,
        deleted: bool,
        latest_only: bool,
    ) -> StoreResult<Vec<SubjectVersion>> {
        let st = self.read()?;
        let prefix = prefix.filter(|p| *p != ":*:").unwrap_or("");
        let mut out = Vec::new();
        for (name, s) in st.subjects.iter().filter(|(n, _)| n.starts_with(prefix)) {
            let vs: Vec<&VersionEntry> = s
                .versions
                .iter()
                .filter(|v| deleted || !v.deleted)
                .collect();
            let chosen: Vec<&VersionEntry> = if latest_only {
                vs.last().copied().into_iter().collect()
            } else {
                vs
            };
            for v in chosen {
                out.push(st.subject_version(name, *v)?);
            }
        }
        Ok(out)
    }

    async fn referenced_by(&self, subject: &str, version: VersionSpec) -> StoreResult<Vec<i32>> {
        let st = self.read()?;
        let v = st.find_version(subject, version, false)?;
        Ok(st.referrers(subject, v.version))
    }

    async fn config(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> StoreResult<CompatibilityLevel> {
        let rec = self.config_record(subject, default_to_global).await?;
        let global = self.read()?.level("");
        Ok(rec.compatibility.unwrap_or(global))
    }

    async fn mode(&self, subject: Option<&str>, default_to_global: bool) -> StoreResult<Mode> {
        let st = self.read()?;
        match subject {
            None => Ok(st.mode.unwrap_or_default()),
            Some(s) => match st.subjects.get(s).and_then(|x| x.mode) {
                Some(m) => Ok(m),
                None if default_to_global => Ok(st.mode.unwrap_or_default()),
                None => Err(RegistryError::SubjectModeNotConfigured(s.to_string())),
            },
        }
    }

    async fn check_compatibility(
        &self,
        subject: &str,
        version: Option<VersionSpec>,
        req: SchemaRequest,
        normalize: bool,
    ) -> StoreResult<CompatibilityResult> {
        let st = self.read()?;
        let parsed = st.parse(&req)?;
        let _ = normalize;
        let level = st.level(subject);
        let (against, level) = match version {
            Some(spec) => {
                let v = st.find_version(subject, spec, false)?;
                // A single named version: check it directly at the non-transitive level.
                let level = match level {
                    CompatibilityLevel::BackwardTransitive => CompatibilityLevel::Backward,
                    CompatibilityLevel::ForwardTransitive => CompatibilityLevel::Forward,
                    CompatibilityLevel::FullTransitive => CompatibilityLevel::Full,
                    l => l,
                };
                (vec![v], level)
            }
            None => (
                st.subjects
                    .get(subject)
                    .map(|s| s.live().copied().collect())
                    .unwrap_or_default(),
                level,
            ),
        };
        // The metadata a registration of this request would store (reserved names).
        let (metadata, _) = st.contract_for(subject, &req, st.latest_live(subject).map(|p| p.1));
        let new = compat::Version {
            schema: &parsed,
            metadata: metadata.as_ref(),
        };
        let messages = st.compat_messages(subject, new, &against, level);
        Ok(CompatibilityResult {
            is_compatible: messages.is_empty(),
            messages,
        })
    }

    async fn contexts(&self) -> StoreResult<Vec<String>> {
        Ok(vec![".".to_string()])
    }

    async fn config_record(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> StoreResult<ConfigRecord> {
        let st = self.read()?;
        let mut global = st.config.clone().unwrap_or_default();
        global.compatibility = Some(global.compatibility.unwrap_or_default());
        match subject {
            None => Ok(global),
            Some(s) => match st.subjects.get(s).and_then(|x| x.config.as_ref()) {
                Some(c) if default_to_global => Ok(c.or(&global)),
                Some(c) => Ok(c.clone()),
                None if default_to_global => Ok(global),
                None => Err(RegistryError::SubjectCompatibilityNotConfigured(
                    s.to_string(),
                )),
            },
        }
    }

    async fn schema_by_guid(&self, guid: [u8; 16]) -> StoreResult<SchemaById> {
        let id = self.ids_by_guid(guid).await?.first().copied();
        match id {
            Some(id) => self.schema_by_id(id).await,
            None => Err(guid_not_found(&guid)),
        }
    }

    async fn ids_by_guid(&self, guid: [u8; 16]) -> StoreResult<Vec<i32>> {
        let st = self.read()?;
        match st.by_guid.get(&guid) {
            Some(ids) if !ids.is_empty() => Ok(ids.iter().copied().collect()),
            _ => Err(guid_not_found(&guid)),
        }
    }

    async fn latest_with_metadata(
        &self,
        subject: &str,
        properties: &[(String, String)],
        deleted: bool,
    ) -> StoreResult<SubjectVersion> {
        let st = self.read()?;
        let s = st.subject(subject)?;
        let found = s
            .versions
            .iter()
            .rev()
            .filter(|v| deleted || !v.deleted)
            .find(|v| {
                st.schemas.get(&v.id).is_some_and(|e| {
                    let props = e.metadata.as_ref().and_then(|m| m.properties.as_ref());
                    properties
                        .iter()
                        .all(|(k, val)| props.is_some_and(|p| p.get(k) == Some(val)))
                })
            })
            .copied();
        match found {
            Some(v) => st.subject_version(subject, v),
            None => Err(RegistryError::SchemaNotFound(format!(
                "Schema with metadata in subject '{subject}' not found"
            ))),
        }
    }
}
