//! Just enough of SQLite's b-tree page format to find an interior page's children
//! (https://www.sqlite.org/fileformat2.html#b_tree_pages): a scan reads them in order, so
//! once it has started on one interior page's children the rest can be fetched together.

use crate::ltx::Pgno;

/// The child page numbers of an interior b-tree page, left to right (the right-most
/// pointer last); `None` for any other page or a malformed one. `page` is a whole page;
/// page 1's b-tree header starts after the 100-byte database header.
pub(crate) fn interior_children(pgno: Pgno, page: &[u8]) -> Option<Vec<Pgno>> {
    let header_at = if pgno == Pgno::ONE { 100 } else { 0 };
    let header = page.get(header_at..header_at + 12)?;
    // 0x02: interior index page, 0x05: interior table page.
    if !matches!(header.first()?, 0x02 | 0x05) {
        return None;
    }
    let be16 = |at: usize| -> Option<usize> {
        Some(usize::from(u16::from_be_bytes(
            page.get(at..at + 2)?.try_into().ok()?,
        )))
    };
    let be32 = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(page.get(at..at + 4)?.try_into().ok()?))
    };
    let cells = be16(header_at + 3)?;
    let pointers = header_at + 12;
    let mut children = Vec::with_capacity(cells.min(page.len() / 2) + 1);
    for i in 0..cells {
        let cell = be16(pointers + 2 * i)?;
        children.push(Pgno::new(be32(cell)?)?);
    }
    children.push(Pgno::new(be32(header_at + 8)?)?);
    Some(children)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An interior table page with children 7, 9 (in cells) and 12 (right-most).
    fn interior(at: usize) -> Vec<u8> {
        let mut page = vec![0u8; 512];
        page[at] = 0x05;
        page[at + 3..at + 5].copy_from_slice(&2u16.to_be_bytes());
        page[at + 8..at + 12].copy_from_slice(&12u32.to_be_bytes());
        for (i, (cell_at, child)) in [(400u16, 7u32), (450, 9)].into_iter().enumerate() {
            let p = at + 12 + 2 * i;
            page[p..p + 2].copy_from_slice(&cell_at.to_be_bytes());
            page[cell_at as usize..cell_at as usize + 4].copy_from_slice(&child.to_be_bytes());
        }
        page
    }

    #[test]
    fn children_of_interior_pages_in_order() {
        let p = |n| Pgno::new(n).unwrap();
        assert_eq!(
            interior_children(p(3), &interior(0)),
            Some(vec![p(7), p(9), p(12)])
        );
        assert_eq!(
            interior_children(Pgno::ONE, &interior(100)),
            Some(vec![p(7), p(9), p(12)])
        );
        let mut leaf = interior(0);
        leaf[0] = 0x0d;
        assert_eq!(interior_children(p(3), &leaf), None);
        let mut bad = interior(0);
        bad[3..5].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(
            interior_children(p(3), &bad),
            None,
            "cell pointers past the page"
        );
        assert_eq!(interior_children(p(3), &[0x05, 0, 0]), None);
    }
}
