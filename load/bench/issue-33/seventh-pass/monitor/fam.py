# Commands per citizen by (round trip or script, command, key family) from a MONITOR log:
# python3 fam.py MONITOR-LOG CITIZENS. A key family is the key with its prefix taken off and
# its hashed or random parts as *.
import re,sys,collections
c=collections.Counter(); rt=collections.Counter()
cmdc=collections.Counter()
for line in open(sys.argv[1]):
    m=re.match(r'^[\d.]+ \[\d+ ([^\]]+)\] (.*)$',line.strip())
    if not m: continue
    src,rest=m.groups()
    args=re.findall(r'"((?:[^"\\]|\\.)*)"',rest)
    if not args: continue
    cmd=args[0].upper()
    key=args[1] if len(args)>1 else ''
    if cmd in('EVALSHA','EVAL'): key=args[3] if len(args)>3 else ''
    k=re.sub(r'^emta[_\w-]*?:','',key)
    k=k.replace('{','').replace('}','')
    parts=k.split(':')
    norm=[]
    for p in parts:
        if len(p)>=12 or re.fullmatch(r'[0-9a-f-]{8,}',p) or re.fullmatch(r'\d+',p): norm.append('*')
        else: norm.append(p)
    fam=':'.join(norm)
    c[(cmd,fam,'lua' if src=='lua' else 'rt')]+=1
    cmdc[cmd]+=1
n=float(sys.argv[2])
for (cmd,fam,src),v in sorted(c.items(),key=lambda x:-x[1]):
    if v/n>=0.05: print(f"{v/n:6.2f} {src:3} {cmd:10} {fam}")
print('---')
for k,v in cmdc.most_common(): print(f"{v/n:6.2f} {k}")
print('total',sum(cmdc.values())/n)
