// std::string, std::map and std::thread under a preloaded malloc: four
// threads each build a map of strings, hand it to the main thread, which
// merges them. The output depends only on the work done.
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

static std::map<std::string, long> build(int t) {
    std::map<std::string, long> m;
    std::string s;
    for (int i = 0; i < 200000; i++) {
        s = "key-" + std::to_string((i * 7919 + t) % 50021) + std::string(i % 40, 'x');
        m[s] += i % 97;
        if (m.size() > 20000) {
            m.erase(m.begin());
        }
    }
    return m;
}

int main() {
    std::vector<std::map<std::string, long>> parts(4);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; t++) {
        threads.emplace_back([t, &parts] { parts[t] = build(t); });
    }
    for (auto &th : threads) {
        th.join();
    }
    // Threads that only free: each drops another thread's map.
    std::vector<std::thread> droppers;
    std::map<std::string, long> all;
    for (auto &p : parts) {
        for (auto &kv : p) {
            all[kv.first] += kv.second;
        }
    }
    for (int t = 0; t < 4; t++) {
        droppers.emplace_back([t, &parts] { parts[(t + 1) % 4].clear(); });
    }
    for (auto &th : droppers) {
        th.join();
    }
    long sum = 0;
    size_t chars = 0;
    for (auto &kv : all) {
        sum += kv.second;
        chars += kv.first.size();
    }
    std::printf("keys %zu chars %zu sum %ld first %s\n", all.size(), chars, sum, all.begin()->first.c_str());
    return 0;
}
