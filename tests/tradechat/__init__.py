"""Tests of the trading chatroom: codec, bodies, service, protocol, integration."""
