// The peer's twin of our `diag.noop`: measures the queue's own overhead.
module.exports = async () => {};
