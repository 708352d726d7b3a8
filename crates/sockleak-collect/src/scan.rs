//! One scan: namespaces, dumps and the /proc walk joined into a snapshot.
