"""Provider drivers behind one interface (see base.Provider)."""
