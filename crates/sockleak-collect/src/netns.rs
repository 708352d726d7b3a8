//! Network namespaces: discovery and entering.
