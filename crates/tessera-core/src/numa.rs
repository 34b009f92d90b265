//! NUMA topology and binding (being written).
