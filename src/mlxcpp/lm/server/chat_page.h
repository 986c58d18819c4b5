// The chat page `mlxcpp server` serves at GET /: one self-contained HTML file
// (no external resources) that streams answers from /v1/chat/completions.
#pragma once

namespace lm::server {

inline constexpr const char* kChatPage = R"HTML(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>mlxcpp chat</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;display:flex;flex-direction:column;height:100vh;background:#f6f6f4}
header{padding:8px 16px;background:#222;color:#eee;display:flex;gap:12px;align-items:center;font-size:14px}
header input{font-size:13px;padding:2px 6px}
#log{flex:1;overflow-y:auto;padding:16px}
.msg{max-width:760px;margin:8px auto;padding:10px 14px;border-radius:8px;white-space:pre-wrap;line-height:1.4}
.user{background:#dbe8ff}.assistant{background:#fff;border:1px solid #ddd}.error{background:#fdd}
form{display:flex;gap:8px;padding:12px 16px;max-width:792px;margin:0 auto;width:100%;box-sizing:border-box}
textarea{flex:1;font:inherit;padding:8px;resize:vertical;min-height:44px}
button{font:inherit;padding:0 18px}
#stats{font-size:12px;color:#aaa;margin-left:auto}
</style></head><body>
<header><b>mlxcpp</b><span id="model"></span>
<label>temperature <input id="temp" type="number" step="0.1" min="0" value="0" style="width:4em"></label>
<label>max tokens <input id="maxtok" type="number" min="1" value="256" style="width:5em"></label>
<label>API key <input id="key" type="password" style="width:9em"></label>
<button id="reset" type="button">New chat</button><span id="stats"></span></header>
<div id="log"></div>
<form id="form"><textarea id="input" placeholder="Message (Enter sends, Shift+Enter: new line)"></textarea>
<button id="send" type="submit">Send</button></form>
<script>
const log=document.getElementById('log'),input=document.getElementById('input'),form=document.getElementById('form');
const keyEl=document.getElementById('key');keyEl.value=localStorage.getItem('mlxcpp-key')||'';
keyEl.onchange=()=>localStorage.setItem('mlxcpp-key',keyEl.value);
let history=[];let busy=false;
function headers(){const h={'Content-Type':'application/json'};if(keyEl.value)h['Authorization']='Bearer '+keyEl.value;return h;}
fetch('/v1/models',{headers:headers()}).then(r=>r.json()).then(j=>{if(j.data)document.getElementById('model').textContent=j.data[0].id;}).catch(()=>{});
function add(role,text){const d=document.createElement('div');d.className='msg '+role;d.textContent=text;log.appendChild(d);log.scrollTop=log.scrollHeight;return d;}
document.getElementById('reset').onclick=()=>{history=[];log.innerHTML='';};
input.addEventListener('keydown',e=>{if(e.key==='Enter'&&!e.shiftKey){e.preventDefault();form.requestSubmit();}});
form.onsubmit=async e=>{e.preventDefault();const text=input.value;if(!text.trim()||busy)return;busy=true;input.value='';
 add('user',text);history.push({role:'user',content:text});const out=add('assistant','');let answer='';const t0=performance.now();let n=0;
 try{const r=await fetch('/v1/chat/completions',{method:'POST',headers:headers(),body:JSON.stringify({messages:history,stream:true,
   stream_options:{include_usage:true},temperature:Number(document.getElementById('temp').value),max_tokens:Number(document.getElementById('maxtok').value)})});
  if(!r.ok){const j=await r.json().catch(()=>({}));throw new Error((j.error&&j.error.message)||r.statusText);}
  const reader=r.body.getReader();const dec=new TextDecoder();let buf='';
  for(;;){const {done,value}=await reader.read();if(done)break;buf+=dec.decode(value,{stream:true});let i;
   while((i=buf.indexOf('\n\n'))>=0){const ev=buf.slice(0,i);buf=buf.slice(i+2);
    for(const line of ev.split('\n')){if(!line.startsWith('data: '))continue;const data=line.slice(6);if(data==='[DONE]')continue;
     const j=JSON.parse(data);if(j.error)throw new Error(j.error.message);
     if(j.choices&&j.choices.length&&j.choices[0].delta&&j.choices[0].delta.content){answer+=j.choices[0].delta.content;out.textContent=answer;log.scrollTop=log.scrollHeight;}
     if(j.usage)n=j.usage.completion_tokens;}}}
  history.push({role:'assistant',content:answer});
  const s=(performance.now()-t0)/1000;document.getElementById('stats').textContent=n+' tokens, '+(n/s).toFixed(1)+' tok/s';
 }catch(err){out.className='msg error';out.textContent='Error: '+err.message;history.pop();}
 busy=false;};
</script></body></html>
)HTML";

}  // namespace lm::server
