//! The declared views together: planned against the tables the sources
//! describe, one engine running them all, and the input relations that
//! feed it.
//!
//! Views are planned in the order they are declared, each over the source
//! tables and the views before it. Every source table is an input relation
//! of the engine; the tables a view reads must have a key, since the
//! engine's inputs are the tables' current rows and a change names its row
//! by its key.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLockReadGuard};

use tributary_core::{TableRef, TableSchema};

use crate::dataflow::Plan;
use crate::engine::{Engine, Snapshot};
use crate::sql::{self, Catalog, ColumnDesc, Kind, Relation};
use crate::ViewError;

/// One `[[view]]`: its name and its SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewDecl {
    pub name: String,
    pub sql: String,
}

/// A table a source captures, as the source describes it.
#[derive(Debug, Clone)]
pub struct SourceTable {
    pub source: String,
    pub table: TableRef,
    pub schema: Arc<TableSchema>,
}

/// A planned, running view: what the query endpoint names and describes.
#[derive(Debug, Clone)]
pub struct DeclaredView {
    pub name: String,
    pub sql: String,
    pub columns: Vec<ColumnDesc>,
    /// The sources whose tables it reads, in name order.
    pub sources: Vec<String>,
    /// Output columns that name a row, when its SQL gives them.
    pub key: Option<Vec<usize>>,
}

/// One input relation of the engine: a source table's current rows.
#[derive(Debug, Clone)]
pub(crate) struct Input {
    pub(crate) source: String,
    pub(crate) table: TableRef,
    /// Name and kind of each column, in the described order.
    pub(crate) columns: Vec<(String, Kind)>,
    /// Indices of the key columns.
    pub(crate) key: Vec<usize>,
}

/// Every declared view on one engine.
pub struct ViewSet {
    engine: Engine,
    views: Vec<DeclaredView>,
    inputs: Vec<Input>,
    /// Sources whose tables some view reads, with their keyed tables'
    /// input indices (all of them are kept, so a view whose SQL changes
    /// between runs is rebuilt from the kept rows).
    fed: HashMap<String, Vec<usize>>,
}

impl ViewSet {
    /// Plans every view over `tables` and starts the engine (empty: the
    /// feeds restore the kept rows, then the sources' changes follow).
    pub fn declare(decls: &[ViewDecl], tables: &[SourceTable]) -> Result<Self, ViewError> {
        let mut catalog = Catalog::default();
        let mut inputs = Vec::with_capacity(tables.len());
        for t in tables {
            let name = [
                t.source.clone(),
                t.table.schema.clone(),
                t.table.table.clone(),
            ];
            let relation = Relation::of_schema(name, &t.schema);
            let columns = relation
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.kind))
                .collect();
            catalog.add(relation);
            let key = t
                .schema
                .key()
                .filter_map(|k| t.schema.columns().iter().position(|c| c.name == k.name))
                .collect();
            inputs.push(Input {
                source: t.source.clone(),
                table: t.table.clone(),
                columns,
                key,
            });
        }
        let mut views: Vec<DeclaredView> = Vec::with_capacity(decls.len());
        let mut plans = Vec::with_capacity(decls.len());
        let mut read = BTreeSet::new();
        for decl in decls {
            if views.iter().any(|v| v.name == decl.name) {
                return Err(ViewError::Duplicate(decl.name.clone()));
            }
            let planned = sql::plan(&decl.sql, &catalog).map_err(|source| ViewError::Plan {
                view: decl.name.clone(),
                source,
            })?;
            let mut sources = BTreeSet::new();
            for i in planned.plan.inputs() {
                let input: &Input = &inputs[i];
                sources.insert(input.source.clone());
                if input.key.is_empty() {
                    return Err(ViewError::NoKey {
                        view: decl.name.clone(),
                        table: format!("{}.{}", input.source, input.table),
                    });
                }
                read.insert(i);
            }
            catalog.add_view(&decl.name, &planned);
            views.push(DeclaredView {
                name: decl.name.clone(),
                sql: decl.sql.clone(),
                key: planned.key.clone(),
                columns: planned.columns,
                sources: sources.into_iter().collect(),
            });
            plans.push(planned.plan);
        }
        let mut fed: HashMap<String, Vec<usize>> = HashMap::new();
        for &i in &read {
            fed.entry(inputs[i].source.clone()).or_default();
        }
        for (i, input) in inputs.iter().enumerate() {
            if let Some(kept) = fed.get_mut(&input.source) {
                if !input.key.is_empty() {
                    kept.push(i);
                }
            }
        }
        let engine = Engine::start(inputs.len(), plans);
        Ok(Self {
            engine,
            views,
            inputs,
            fed,
        })
    }

    pub fn views(&self) -> &[DeclaredView] {
        &self.views
    }

    /// A view's index by its name.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.views.iter().position(|v| v.name == name)
    }

    /// View `index`'s rows as of the newest complete time.
    pub fn read(&self, index: usize) -> RwLockReadGuard<'_, Snapshot> {
        self.engine.read(index)
    }

    /// The sources some view reads, in name order.
    pub fn fed_sources(&self) -> Vec<String> {
        let mut names: Vec<String> = self.fed.keys().cloned().collect();
        names.sort();
        names
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn input(&self, index: usize) -> &Input {
        &self.inputs[index]
    }

    /// The input indices of `source`'s kept tables.
    pub(crate) fn kept(&self, source: &str) -> &[usize] {
        self.fed.get(source).map_or(&[], Vec::as_slice)
    }
}

impl Plan {
    /// The input relations this plan reads.
    pub fn inputs(&self) -> BTreeSet<usize> {
        let mut found = BTreeSet::new();
        self.collect_inputs(&mut found);
        found
    }

    fn collect_inputs(&self, found: &mut BTreeSet<usize>) {
        match self {
            Plan::Get(i) => {
                found.insert(*i);
            }
            Plan::Filter { input, .. } | Plan::Map { input, .. } | Plan::Reduce { input, .. } => {
                input.collect_inputs(found)
            }
            Plan::Distinct(input) => input.collect_inputs(found),
            Plan::Join { left, right, .. } => {
                left.collect_inputs(found);
                right.collect_inputs(found);
            }
            Plan::Union(all) => all.iter().for_each(|p| p.collect_inputs(found)),
        }
    }
}
