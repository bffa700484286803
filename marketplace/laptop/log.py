"""
The replicated log kept in memory: a snapshot base plus the entries after it.

Indexes start at 0 (the spec's ``committed_index`` is -1 before the first
entry); ``base_index`` is the last index folded into the snapshot, -1 when
there is none.
"""

from typing import List, Sequence, Tuple

from protocols.laptop import Entry


class ReplicatedLog:
    def __init__(self, base_index: int = -1, base_view: int = -1, entries: Sequence[Entry] = ()):
        self.base_index = base_index
        self.base_view = base_view
        self._entries: List[Entry] = list(entries)

    @property
    def last_index(self) -> int:
        return self.base_index + len(self._entries)

    @property
    def last_view(self) -> int:
        return self._entries[-1].view if self._entries else self.base_view

    def view_at(self, index: int) -> int:
        """View of the entry at ``index`` (``base_view`` at the base)."""
        if index == self.base_index:
            return self.base_view
        return self._entries[index - self.base_index - 1].view

    def entry(self, index: int) -> Entry:
        return self._entries[index - self.base_index - 1]

    def entries_from(self, start: int, limit: int) -> Tuple[Entry, ...]:
        offset = start - self.base_index - 1
        return tuple(self._entries[offset : offset + limit])

    def entries_after(self, index: int) -> Tuple[Entry, ...]:
        """Every entry above ``index`` (at or above the base)."""
        return tuple(self._entries[index - self.base_index :])

    def append(self, entry: Entry) -> int:
        self._entries.append(entry)
        return self.last_index

    def extend(self, entries: Sequence[Entry]) -> None:
        """Append several entries."""
        self._entries.extend(entries)

    def truncate_after(self, index: int) -> None:
        """Drop every entry above ``index`` (a suffix a new primary overruled)."""
        del self._entries[index - self.base_index :]

    def compact(self, index: int) -> None:
        """Fold every entry up to ``index`` into the base (they are in a snapshot now)."""
        view = self.view_at(index)
        del self._entries[: index - self.base_index]
        self.base_index = index
        self.base_view = view

    def reset(self, base_index: int, base_view: int) -> None:
        """Discard everything: a snapshot from the primary replaces this log."""
        self._entries = []
        self.base_index = base_index
        self.base_view = base_view
