"""Pure logic: no sockets, no ``await``, no threads. Everything here is unit-tested without a broker."""
