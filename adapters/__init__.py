"""The platform adapters. Each package implements `gateway.platform.Adapter` for one
platform; the core finds them by name through `gateway.registry` and never imports them."""
