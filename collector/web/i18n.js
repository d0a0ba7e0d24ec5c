/* UI text: zh-CN (default) and English. The language comes from ?lang=, then localStorage, then zh. */
"use strict";
(function () {
  const S = {
    zh: {
      "nav.overview": "概览", "nav.host": "主机", "nav.alerts": "告警", "nav.exceptions": "异常", "nav.performance": "性能",
      "lang.switch": "English",
      "token.button": "访问令牌", "token.title": "访问令牌", "token.clear": "清除", "token.set": "已设置令牌",
      "token.help": "读取数据需要 read_tokens 中的令牌（本机 up 模式除外）。令牌仅保存在本浏览器。",
      "token.needed": "需要访问令牌才能读取数据。", "token.denied": "此令牌无权执行该操作。", "token.enter": "输入令牌",
      "common.cancel": "取消", "common.save": "保存", "common.refresh": "刷新", "common.loading": "加载中…",
      "common.none": "暂无数据", "common.error": "请求失败", "common.not_enabled": "未启用", "common.back": "返回",
      "common.all": "全部", "common.window": "时间窗口", "common.module": "模块", "common.host": "主机", "common.sort": "排序",
      "common.count": "次数", "common.search": "筛选", "common.ago": "前", "common.never": "从未", "common.updated": "更新于",
      "common.filter_host": "筛选主机…",
      "health.ok": "采集器正常", "health.bad": "采集器异常", "health.down": "采集器不可达",
      "status.up": "在线", "status.stale": "延迟", "status.down": "离线",
      "ov.title": "主机概览", "ov.hosts": "主机数", "ov.up": "在线", "ov.stale": "延迟", "ov.down": "离线",
      "ov.firing": "告警中", "ov.no_hosts": "还没有主机上报数据。在主机上运行 infrawatch agent 后会出现在这里。",
      "col.host": "主机", "col.status": "状态", "col.last_seen": "最后上报", "col.cpu": "CPU", "col.mem": "内存",
      "col.disk": "磁盘(最高)", "col.load": "负载(1m)", "col.version": "Agent 版本", "col.trend": "CPU 趋势(1小时)",
      "host.pick": "选择主机", "host.range": "时间范围", "host.cpu": "CPU 使用率 (%)", "host.mem": "内存使用率 (%)",
      "host.fs": "文件系统使用率 (%)", "host.diskio": "磁盘读写 (字节/秒)", "host.net": "网络流量 (字节/秒)",
      "host.load": "系统负载", "host.events": "最近事件", "host.kind": "类型", "host.no_data": "该时间范围内无数据",
      "host.read": "读", "host.write": "写", "host.rx": "接收", "host.tx": "发送", "host.usage": "使用率",
      "host.user": "用户态", "host.system": "内核态", "host.iowait": "IO 等待", "host.steal": "被窃取",
      "host.mem_total": "内存总量", "host.cpus": "CPU 核数", "host.uptime": "运行时间", "host.none": "没有主机",
      "al.title": "告警", "al.firing": "告警中", "al.pending": "待触发", "al.resolved": "已恢复",
      "al.ack": "确认", "al.acked": "已确认", "al.ack_by": "确认人", "al.ack_prompt": "你的名字（确认人）：",
      "al.silenced": "已静默", "al.inhibited": "已抑制", "al.rule": "规则", "al.severity": "级别", "al.labels": "标签",
      "al.since": "开始于", "al.value": "当前值", "al.summary": "摘要", "al.state": "状态", "al.none": "当前没有告警",
      "al.silences": "静默规则", "al.new_silence": "新建静默", "al.matchers": "匹配条件", "al.duration": "时长",
      "al.comment": "备注", "al.created_by": "创建人", "al.ends": "结束于", "al.expire": "结束静默",
      "al.silence_this": "静默", "al.notifications": "通知记录", "al.receiver": "接收方", "al.outcome": "结果",
      "al.no_silences": "没有静默规则", "al.error": "错误", "al.no_notifications": "没有通知记录", "al.create": "创建",
      "al.matchers_help": "例如 host=\"web1\", rule=\"cpu_high\"（逗号分隔）",
      "sev.critical": "严重", "sev.warning": "警告", "sev.info": "提示",
      "sil.active": "生效中", "sil.pending": "未开始", "sil.expired": "已结束",
      "ex.title": "应用异常", "ex.type": "异常类型", "ex.message": "消息", "ex.first_seen": "首次出现",
      "ex.last_seen": "最近出现", "ex.window_count": "窗口内次数", "ex.total": "累计次数", "ex.hosts": "主机",
      "ex.none": "该时间窗口内没有异常", "ex.stack": "堆栈", "ex.trend": "趋势", "ex.occurrences": "最近发生",
      "ex.endpoint": "接口", "ex.service": "服务", "ex.sort_count": "按次数", "ex.sort_last": "按最近出现",
      "ex.sort_total": "按累计次数", "ex.sort_first": "按首次出现", "ex.frames": "调用帧", "ex.language": "语言",
      "pf.title": "性能统计", "pf.endpoints": "接口 (API)", "pf.sql": "SQL 语句", "pf.endpoint": "接口",
      "pf.fingerprint": "SQL 指纹", "pf.statement": "语句", "pf.count": "调用次数", "pf.error_rate": "错误率",
      "pf.avg": "平均", "pf.max": "最大", "pf.slowest": "最慢样本", "pf.duration": "耗时", "pf.time": "时间",
      "pf.none": "该时间窗口内没有性能数据", "pf.db": "数据库", "pf.total": "总耗时",
    },
    en: {
      "nav.overview": "Overview", "nav.host": "Host", "nav.alerts": "Alerts", "nav.exceptions": "Exceptions", "nav.performance": "Performance",
      "lang.switch": "中文",
      "token.button": "Access token", "token.title": "Access token", "token.clear": "Clear", "token.set": "Token set",
      "token.help": "Reading data needs a token from read_tokens (except on loopback in up mode). The token is kept in this browser only.",
      "token.needed": "An access token is required to read data.", "token.denied": "This token may not do that.", "token.enter": "Enter token",
      "common.cancel": "Cancel", "common.save": "Save", "common.refresh": "Refresh", "common.loading": "Loading…",
      "common.none": "No data", "common.error": "Request failed", "common.not_enabled": "Not enabled", "common.back": "Back",
      "common.all": "All", "common.window": "Window", "common.module": "Module", "common.host": "Host", "common.sort": "Sort",
      "common.count": "Count", "common.search": "Filter", "common.ago": "ago", "common.never": "never", "common.updated": "Updated",
      "common.filter_host": "Filter hosts…",
      "health.ok": "Collector OK", "health.bad": "Collector failing", "health.down": "Collector unreachable",
      "status.up": "Up", "status.stale": "Stale", "status.down": "Down",
      "ov.title": "Hosts overview", "ov.hosts": "Hosts", "ov.up": "Up", "ov.stale": "Stale", "ov.down": "Down",
      "ov.firing": "Firing", "ov.no_hosts": "No host has reported yet. Hosts appear here once an infrawatch agent runs on them.",
      "col.host": "Host", "col.status": "Status", "col.last_seen": "Last seen", "col.cpu": "CPU", "col.mem": "Memory",
      "col.disk": "Disk (max)", "col.load": "Load (1m)", "col.version": "Agent version", "col.trend": "CPU trend (1h)",
      "host.pick": "Host", "host.range": "Range", "host.cpu": "CPU usage (%)", "host.mem": "Memory used (%)",
      "host.fs": "Filesystem used (%)", "host.diskio": "Disk I/O (bytes/s)", "host.net": "Network (bytes/s)",
      "host.load": "Load average", "host.events": "Recent events", "host.kind": "Kind", "host.no_data": "No data in this range",
      "host.read": "read", "host.write": "write", "host.rx": "rx", "host.tx": "tx", "host.usage": "usage",
      "host.user": "user", "host.system": "system", "host.iowait": "iowait", "host.steal": "steal",
      "host.mem_total": "Memory", "host.cpus": "CPUs", "host.uptime": "Uptime", "host.none": "No hosts",
      "al.title": "Alerts", "al.firing": "Firing", "al.pending": "Pending", "al.resolved": "Resolved",
      "al.ack": "Ack", "al.acked": "Acknowledged", "al.ack_by": "Acked by", "al.ack_prompt": "Your name (who acknowledges):",
      "al.silenced": "Silenced", "al.inhibited": "Inhibited", "al.rule": "Rule", "al.severity": "Severity", "al.labels": "Labels",
      "al.since": "Since", "al.value": "Value", "al.summary": "Summary", "al.state": "State", "al.none": "No alerts right now",
      "al.silences": "Silences", "al.new_silence": "New silence", "al.matchers": "Matchers", "al.duration": "Duration",
      "al.comment": "Comment", "al.created_by": "Created by", "al.ends": "Ends", "al.expire": "Expire",
      "al.silence_this": "Silence", "al.notifications": "Notifications", "al.receiver": "Receiver", "al.outcome": "Outcome",
      "al.no_silences": "No silences", "al.error": "Error", "al.no_notifications": "No notifications", "al.create": "Create",
      "al.matchers_help": "e.g. host=\"web1\", rule=\"cpu_high\" (comma separated)",
      "sev.critical": "critical", "sev.warning": "warning", "sev.info": "info",
      "sil.active": "active", "sil.pending": "pending", "sil.expired": "expired",
      "ex.title": "Application exceptions", "ex.type": "Type", "ex.message": "Message", "ex.first_seen": "First seen",
      "ex.last_seen": "Last seen", "ex.window_count": "In window", "ex.total": "Total", "ex.hosts": "Hosts",
      "ex.none": "No exceptions in this window", "ex.stack": "Stack trace", "ex.trend": "Trend", "ex.occurrences": "Recent occurrences",
      "ex.endpoint": "Endpoint", "ex.service": "Service", "ex.sort_count": "By count", "ex.sort_last": "By last seen",
      "ex.sort_total": "By total", "ex.sort_first": "By first seen", "ex.frames": "Frames", "ex.language": "Language",
      "pf.title": "Performance", "pf.endpoints": "Endpoints (API)", "pf.sql": "SQL statements", "pf.endpoint": "Endpoint",
      "pf.fingerprint": "SQL fingerprint", "pf.statement": "Statement", "pf.count": "Calls", "pf.error_rate": "Error rate",
      "pf.avg": "avg", "pf.max": "max", "pf.slowest": "Slowest samples", "pf.duration": "Duration", "pf.time": "Time",
      "pf.none": "No performance data in this window", "pf.db": "Database", "pf.total": "Total time",
    },
  };

  function pick() {
    let q = null;
    try { q = new URLSearchParams(location.search).get("lang"); } catch (e) { /* old browser */ }
    if (q) {
      q = q.toLowerCase().startsWith("en") ? "en" : "zh";
      try { localStorage.setItem("iw.lang", q); } catch (e) { /* private mode */ }
      return q;
    }
    let saved = null;
    try { saved = localStorage.getItem("iw.lang"); } catch (e) { /* private mode */ }
    return saved === "en" ? "en" : "zh";
  }

  const I18N = {
    lang: pick(),
    t(key) {
      const d = S[I18N.lang] || S.zh;
      return key in d ? d[key] : (key in S.zh ? S.zh[key] : key);
    },
    set(lang) {
      I18N.lang = lang === "en" ? "en" : "zh";
      try { localStorage.setItem("iw.lang", I18N.lang); } catch (e) { /* private mode */ }
      document.documentElement.lang = I18N.lang === "en" ? "en" : "zh-CN";
    },
    strings: S,
  };
  document.documentElement.lang = I18N.lang === "en" ? "en" : "zh-CN";
  window.I18N = I18N;
})();
