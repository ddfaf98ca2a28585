//! A compact, append-only sequence of names: one string holds them all, back to back.
//!
//! A million names kept as separate `String`s cost three pointers and an allocation each;
//! here they cost four bytes each beyond their text. The policy's index points into these
//! sequences instead of copying the names again.

/// Names in the order they were added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    text: String,
    /// Where each name ends in `text`.
    ends: Vec<u32>,
}

impl Names {
    /// An empty sequence with room for about `bytes` of text.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(bytes / 16),
        }
    }

    /// Appends a name; returns false, keeping nothing, for a name beyond 4 GiB of text.
    pub fn push(&mut self, name: &str) -> bool {
        let Ok(end) = u32::try_from(self.text.len() + name.len()) else {
            return false;
        };
        self.text.push_str(name);
        self.ends.push(end);
        true
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The name at `index`. Panics when `index` is out of range, like slice indexing.
    pub fn get(&self, index: usize) -> &str {
        let start = if index == 0 {
            0
        } else {
            self.ends[index - 1] as usize
        };
        &self.text[start..self.ends[index] as usize]
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|index| self.get(index))
    }

    /// Every name with the offset where it starts in the text.
    pub fn spans(&self) -> impl Iterator<Item = (u32, &str)> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.iter())
    }

    /// The text of `len` bytes at `offset`, as [`Names::spans`] gave it.
    pub fn span(&self, offset: u32, len: usize) -> &str {
        let start = offset as usize;
        &self.text[start..start + len]
    }

    /// Gives back the spare capacity left from loading.
    pub fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.ends.shrink_to_fit();
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.ends.capacity() * 4
    }
}

impl<'a> FromIterator<&'a str> for Names {
    fn from_iter<I: IntoIterator<Item = &'a str>>(names: I) -> Self {
        let mut all = Self::default();
        names.into_iter().for_each(|name| {
            all.push(name);
        });
        all
    }
}

#[cfg(test)]
mod tests {
    use super::Names;

    #[test]
    fn keeps_names_in_order() {
        let names: Names = ["a.test", "bb.test", "c.test"].into_iter().collect();
        assert_eq!(names.len(), 3);
        assert_eq!(names.get(1), "bb.test");
        assert_eq!(
            names.iter().collect::<Vec<_>>(),
            ["a.test", "bb.test", "c.test"]
        );
        assert!(Names::default().is_empty());
    }
}
