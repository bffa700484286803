"""The trading chatroom: login, rooms with live push, and a ledger over the NS frame protocol."""
