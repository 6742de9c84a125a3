// supabase-js, unchanged, subscribing to a private channel on the local Realtime server.
// Node 20 has no global WebSocket, so the `ws` package is passed as the transport, as
// Supabase documents. Everything observed is printed as JSON lines for the pytest side.
//
// Environment: SUPABASE_URL, ANON_KEY, ACCESS_TOKEN, TOPIC, VSN (1.0.0 | 2.0.0),
// EXPECT (broadcasts to wait for, then leave), REFRESH_TOKEN (sent with setAuth after SUBSCRIBED),
// HEARTBEAT_MS, TIMEOUT_MS.
import { createClient } from '@supabase/supabase-js'
import WebSocket from 'ws'

const env = process.env
const out = (line) => process.stdout.write(JSON.stringify(line) + '\n')
const expect = Number(env.EXPECT || '0')

const supabase = createClient(env.SUPABASE_URL, env.ANON_KEY, {
  auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
  realtime: {
    transport: WebSocket,
    vsn: env.VSN || '2.0.0',
    heartbeatIntervalMs: Number(env.HEARTBEAT_MS || '25000'),
    heartbeatCallback: (status) => out({ heartbeat: status }),
  },
})

// Phoenix's leave resolves "ok" at once; the socket stays open so the test can see the server
// drop the subscription because of the phx_leave, not because the socket went away.
const finish = async () => {
  const left = await supabase.removeChannel(channel)
  out({ left, connected: supabase.realtime.isConnected() })
}

setTimeout(() => {
  out({ timeout: true })
  process.exit(2)
}, Number(env.TIMEOUT_MS || '15000'))

await supabase.realtime.setAuth(env.ACCESS_TOKEN)
const channel = supabase.channel(env.TOPIC, { config: { private: true } })
let received = 0
channel.on('broadcast', { event: '*' }, (message) => {
  out({ broadcast: message })
  received += 1
  if (expect > 0 && received >= expect) finish()
})
channel.subscribe(async (status, err) => {
  out({ status, error: err ? err.message : null })
  if (status === 'SUBSCRIBED' && env.REFRESH_TOKEN) {
    await supabase.realtime.setAuth(env.REFRESH_TOKEN)
    out({ refreshed: true })
  }
  if (status === 'CHANNEL_ERROR' || status === 'TIMED_OUT') process.exit(0)
})
