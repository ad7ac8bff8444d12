#!/usr/bin/python3
"""The seed flow end to end, as a mobile app would do it:
login over HTTP, connect to the proxy, publish the session to service/auth/<session>,
subscribe to the user's private topic, publish, receive.

  deploy/demo-client.py --user demo --password PW [--api http://127.0.0.1:8080]
                        [--host 127.0.0.1] [--port 5000] [--mqtt 5|3]
Exit status 0 when the message came back, 1 otherwise."""
import argparse
import json
import queue
import sys
import urllib.error
import urllib.request

import paho.mqtt.client as mqtt


def login(api, user, password):
    request = urllib.request.Request(f"{api}/v1/login", data=json.dumps({"username": user, "password": password}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:
        sys.exit(f"login failed: HTTP {e.code} {e.read().decode()}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--api", default="http://127.0.0.1:8080")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--mqtt", choices=["3", "5"], default="5")
    parser.add_argument("--websocket", action="store_true", help="MQTT over WebSocket (path /mqtt), as a browser app")
    parser.add_argument("--origin", help="with --websocket: send the Origin header of a page from ORIGIN "
                                         "(the proxy's allowed_origins must list it; paho's default is https://HOST:PORT)")
    args = parser.parse_args()

    answer = login(args.api, args.user, args.password)
    session, user = answer["session"], answer["user"]
    print(f"1. logged in over HTTP as {user}; session {session[:4]}...{session[-4:]} valid {answer['expires_in']} s")

    inbox = queue.Queue()
    client = mqtt.Client(client_id=f"demo-{user}", protocol=mqtt.MQTTv5 if args.mqtt == "5" else mqtt.MQTTv311,
                         transport="websockets" if args.websocket else "tcp")
    client.on_message = lambda c, u, m: inbox.put((m.topic, m.payload.decode(), m.qos))
    if args.websocket and args.origin:
        client.ws_set_options(path="/mqtt", headers={"Origin": args.origin})
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    over = f"ws://{args.host}:{args.port}/mqtt" if args.websocket else f"{args.host}:{args.port}"
    print(f"2. connected to the proxy at {over} with MQTT {'5.0' if args.mqtt == '5' else '3.1.1'}")

    auth_topic = f"service/auth/{session}"
    client.publish(auth_topic, b"", qos=1)
    topic, payload, _ = inbox.get(timeout=10)
    result = json.loads(payload)
    print(f"3. auth answer: {result}")
    if result.get("result") != "ok":
        return 1

    private = f"private/{user}/demo"
    client.subscribe(f"private/{user}/#", qos=2)
    client.publish(private, b"hello through the proxy", qos=2)
    try:
        while True:
            topic, payload, qos = inbox.get(timeout=10)
            if topic == private:
                break
    except queue.Empty:
        print("4. no message came back")
        return 1
    print(f"4. subscribed to private/{user}/#, published and received at QoS {qos}: {payload!r}")
    client.disconnect()
    client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
