// MQTT.js over ws:// or wss:// through mqtt-proxy: authenticate with the
// session on service/auth/<session>, subscribe at QoS 2, publish at QoS 0-2
// and print what came back as one JSON line.
// Usage: node client.mjs URL SESSION USER PROTOCOL_VERSION [CA_FILE]
import fs from "node:fs";
import mqtt from "mqtt";

const [url, session, user, version, caFile] = process.argv.slice(2);
const topic = `private/${user}/mqttjs`;
const result = { connected: false, auth: null, granted: null, messages: [] };

const options = {
  protocolVersion: Number(version),
  clientId: `mqttjs-${version}-${process.pid}`,
  reconnectPeriod: 0,
  connectTimeout: 5000,
};
if (caFile) options.ca = [fs.readFileSync(caFile)];

const finish = (code, error) => {
  if (error) result.error = String(error.message || error);
  console.log(JSON.stringify(result));
  process.exit(code);
};
setTimeout(() => finish(1, "timed out"), 10000);

const client = mqtt.connect(url, options);
client.on("error", (e) => finish(1, e));
client.on("connect", () => {
  result.connected = true;
  client.publish(`service/auth/${session}`, "", { qos: 1 });
});
client.on("message", (t, payload, packet) => {
  if (t.startsWith("service/auth/")) {
    result.auth = JSON.parse(payload.toString());
    if (result.auth.result !== "ok") return finish(0);
    client.subscribe(topic, { qos: 2 }, (err, granted) => {
      if (err) return finish(1, err);
      result.granted = granted.map((g) => g.qos);
      for (const qos of [0, 1, 2]) client.publish(topic, `qos${qos}`, { qos });
    });
    return;
  }
  result.messages.push([t, payload.toString(), packet.qos]);
  if (result.messages.length === 3) client.end(false, {}, () => finish(0));
});
