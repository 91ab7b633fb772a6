//! Splitting tables into chunks that snapshot workers read in parallel.
//!
//! A chunk is a range of heap pages, read with a TID range condition
//! (`ctid >= '(lo,0)' AND ctid < '(hi,0)'`), which PostgreSQL 14 and later
//! execute as a TID Range Scan: each chunk reads only its own pages. Every
//! worker reads inside the slot's exported snapshot, so the chunks together
//! are exactly the table as of the consistent point.
//!
//! Why page ranges are complete: the coordinating session holds ACCESS SHARE
//! locks on every table for the whole snapshot, so no rewrite (VACUUM FULL,
//! CLUSTER, ALTER TABLE) can move rows, and VACUUM cannot truncate pages
//! while the lock is held. A row visible in the snapshot was written before
//! it, so it lies below the size measured afterwards; the last chunk has no
//! upper bound anyway.

use crate::catalog::TableShape;
use tributary_pg::{quote_ident, quote_table};

/// Chunks smaller than this (8 MB of 8 kB pages) are not worth a separate
/// COPY: per-chunk overhead is a statement and a scan setup. A smaller
/// configured chunk size lowers it.
pub(super) const MIN_CHUNK_PAGES: u64 = 1024;

/// What the planner knows about one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TableSize {
    /// Heap pages, when the table is a plain table on a server with TID
    /// range scans; `None` reads it as one chunk.
    pub pages: Option<u64>,
    pub page_size: u64,
}

/// One range of one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Chunk {
    /// Index into the snapshot's tables.
    pub table: usize,
    /// First page (inclusive); `None`: from the start.
    pub from_page: Option<u64>,
    /// End page (exclusive); `None`: to the end, including pages added since
    /// the size was read.
    pub to_page: Option<u64>,
}

/// How many chunks a table of `size` is split into.
pub(super) fn chunk_count(size: TableSize, parallelism: usize, chunk_bytes: u64) -> u64 {
    let Some(pages) = size.pages else {
        return 1;
    };
    let chunk_pages = (chunk_bytes / size.page_size).max(1);
    let by_size = pages.div_ceil(chunk_pages);
    // Enough chunks to keep every worker busy on one large table…
    let wanted = by_size.max(parallelism as u64);
    // …but none smaller than MIN_CHUNK_PAGES (or the chunk size, if smaller).
    wanted.min(pages / MIN_CHUNK_PAGES.min(chunk_pages)).max(1)
}

/// Splits table `table` into `count` page ranges of (nearly) equal size.
pub(super) fn split(table: usize, pages: u64, count: u64) -> Vec<Chunk> {
    let count = count.max(1);
    (0..count)
        .map(|i| Chunk {
            table,
            from_page: (i > 0).then(|| pages * i / count),
            to_page: (i + 1 < count).then(|| pages * (i + 1) / count),
        })
        .collect()
}

/// Plans the chunks of every table, in table order.
pub(super) fn plan(sizes: &[TableSize], parallelism: usize, chunk_bytes: u64) -> Vec<Chunk> {
    sizes
        .iter()
        .enumerate()
        .flat_map(|(table, &size)| {
            let count = chunk_count(size, parallelism, chunk_bytes);
            split(table, size.pages.unwrap_or(0), count)
        })
        .collect()
}

/// The COPY statement that reads one chunk's published columns.
pub(super) fn copy_sql(shape: &TableShape, chunk: &Chunk) -> String {
    let columns = shape
        .columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let mut sql = format!("COPY (SELECT {columns} FROM {}", quote_table(&shape.table));
    let bounds: Vec<String> = [
        chunk.from_page.map(|p| format!("ctid >= '({p},0)'::tid")),
        chunk.to_page.map(|p| format!("ctid < '({p},0)'::tid")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !bounds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&bounds.join(" AND "));
    }
    sql.push_str(") TO STDOUT");
    sql
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tributary_core::TableRef;

    use super::*;
    use crate::value_mapping::Mapping;

    const PAGE: u64 = 8192;

    fn size(pages: u64) -> TableSize {
        TableSize {
            pages: Some(pages),
            page_size: PAGE,
        }
    }

    #[test]
    fn ranges_cover_every_page_once_and_leave_the_ends_open() {
        for (pages, count) in [(10_310, 4), (10_310, 3), (7, 1), (5_000, 7)] {
            let chunks = split(0, pages, count);
            assert_eq!(chunks.len() as u64, count);
            assert_eq!(chunks[0].from_page, None);
            assert_eq!(chunks.last().unwrap().to_page, None);
            for pair in chunks.windows(2) {
                assert_eq!(pair[0].to_page, pair[1].from_page, "{pages}/{count}");
                assert!(pair[0].to_page.unwrap() > pair[0].from_page.unwrap_or(0));
            }
        }
    }

    #[test]
    fn small_tables_and_unknown_sizes_are_one_chunk() {
        assert_eq!(chunk_count(size(MIN_CHUNK_PAGES - 1), 4, 64 << 20), 1);
        assert_eq!(
            chunk_count(
                TableSize {
                    pages: None,
                    page_size: PAGE
                },
                4,
                1
            ),
            1
        );
        // 80 MB with 4 workers: 4 chunks of ~20 MB, not 2 of 64 MB.
        assert_eq!(chunk_count(size(10_240), 4, 64 << 20), 4);
        // 1 GB in 64 MB chunks with 4 workers: 16.
        assert_eq!(chunk_count(size(131_072), 4, 64 << 20), 16);
        // Never below MIN_CHUNK_PAGES per chunk…
        assert_eq!(chunk_count(size(3 * MIN_CHUNK_PAGES), 8, 64 << 20), 3);
        // …unless the configured chunk size is smaller: 1 MB = 128 pages.
        assert_eq!(chunk_count(size(768), 3, 1 << 20), 6);
        // 700 pages: 5 chunks of 140, not 6 with one of 60.
        assert_eq!(chunk_count(size(700), 8, 1 << 20), 5);
    }

    #[test]
    fn plan_keeps_table_order() {
        let chunks = plan(&[size(4 * MIN_CHUNK_PAGES), size(10)], 2, 64 << 20);
        let tables: Vec<usize> = chunks.iter().map(|c| c.table).collect();
        assert_eq!(tables, vec![0, 0, 1]);
    }

    #[test]
    fn copy_statement_quotes_names_and_bounds_pages() {
        let shape = TableShape {
            table: Arc::new(TableRef::new("public", "Odd \"name\"")),
            columns: vec!["id".to_string(), "v".to_string()].into(),
            mappings: vec![Mapping::Int, Mapping::Text],
            key: vec![0],
            key_columns: vec!["id".to_string()].into(),
            schema: tributary_core::TableSchema::untyped(&["id", "v"], 1),
        };
        let whole = Chunk {
            table: 0,
            from_page: None,
            to_page: None,
        };
        assert_eq!(
            copy_sql(&shape, &whole),
            "COPY (SELECT \"id\", \"v\" FROM \"public\".\"Odd \"\"name\"\"\") TO STDOUT"
        );
        let middle = Chunk {
            from_page: Some(10),
            to_page: Some(20),
            ..whole
        };
        assert!(copy_sql(&shape, &middle)
            .ends_with("WHERE ctid >= '(10,0)'::tid AND ctid < '(20,0)'::tid) TO STDOUT"));
    }
}
