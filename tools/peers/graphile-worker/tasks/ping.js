// The peer's twin of our `diag.ping`: one UDP datagram with the sample's number to
// 127.0.0.1:port the moment the handler starts, so the benchmark times
// enqueue-to-start from the caller's side for both queues the same way.
const dgram = require("node:dgram");

const socket = dgram.createSocket("udp4");
socket.unref();

module.exports = async (payload) => {
  await new Promise((resolve, reject) =>
    socket.send(String(payload.seq), payload.port, "127.0.0.1", (err) => (err ? reject(err) : resolve())),
  );
};
